"""The long reliability runs, on demand: `pytest -m long` (minutes; not in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.long, pytest.mark.model]
ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], **env: str) -> None:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_full_load_run():
    _run(["-m", "ananke", "bench", "load"])


def test_long_fuzzing():
    _run(["-m", "pytest", "-q", "tests/reliability/test_fuzz.py"], ANANKE_FUZZ_EXAMPLES="2000")


def test_long_schemathesis():
    _run(["-m", "pytest", "-q", "tests/reliability/test_schemathesis.py"], ANANKE_SCHEMATHESIS_EXAMPLES="500")


def test_whole_corpus_gets_one_answer_each(tmp_path):
    """Every maskbench and JSON-Schema-Test-Suite schema, strict and relaxed, through the service:
    a 4xx naming why or a judged 200 each; no 5xx, no request without an answer, no crash."""
    import json

    _run(["-m", "ananke", "bench", "corpus", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "results" / "corpus.json").read_text())["summary"]
    assert summary["items"] == summary["answered"] > 12_000
    assert summary["server_errors_5xx"] == summary["no_answer"] == summary["crashes"] == 0
    assert summary["ok_judged_by_validator"] == summary["ok_200"]
