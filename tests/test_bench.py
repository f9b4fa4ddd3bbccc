"""Smoke test of `ananke bench`: every suite runs with --quick into a temporary folder and writes
its results file and RESULTS section. No timing is asserted (benchmarks measure, tests check)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ananke.bench import SUITES
from ananke.bench.common import pyplot

pytestmark = pytest.mark.model

PLOTTED = {"decode", "compile", "peers", "concurrency"}


@pytest.mark.parametrize("suite", list(SUITES))
def test_quick_suite_writes_results(suite, shared_data, tmp_path):
    # through the CLI, in its own process: what a user runs, and no engine state shared with
    # the other tests of this session
    result = subprocess.run(
        [sys.executable, "-m", "ananke", "bench", suite, "--quick", "--out", str(tmp_path),
         "--data", str(shared_data)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "results" / f"{suite}-quick.json").read_text())
    assert report["suite"] == suite and report["quick"] is True
    assert report["versions"]["ananke"] and report["machine"]["cores"] >= 1
    assert report["summary"] and report["settings"]
    assert f"\n## {suite} — " in (tmp_path / "RESULTS-quick.md").read_text()
    if suite in PLOTTED and pyplot() is not None:
        assert (tmp_path / "results" / f"{suite}-quick.png").stat().st_size > 1000
    if suite == "compliance":
        assert report["summary"]["maskbench"]["invalid_accepted"] == 0
    if suite == "peers":  # each peer either ran every task of both workloads or was skipped with its reason
        assert set(report["summary"]) == {"Github_easy", "Github_medium"}
        for by_tool in report["summary"].values():
            for tool in ("llama_cpp_grammar", "outlines", "xgrammar"):
                assert (tool in by_tool) != (tool in report["settings"]["skipped"])
                if tool in by_tool:
                    assert by_tool[tool]["tasks"] == report["settings"]["workloads"]["Github_easy"]


def test_cli_rejects_an_unknown_suite(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ananke", "bench", "nosuch", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown suite 'nosuch'" in result.stderr and "decode" in result.stderr
    assert not (tmp_path / "results").exists()


def test_isolated_peer_counts_crashes_and_goes_on():
    from ananke.bench.isolate import Isolated

    with Isolated("tests.isolate_workers:worker", memory_bytes=4 << 30, item_timeout_s=2) as peer:
        results = peer.map(["a", "abort", "b", "hog", "c", "hang", "d"])
    assert results[0] == {"echo": "a"} and results[2] == {"echo": "b"}
    assert results[1]["error"].startswith("crash: the process died")
    assert results[3]["error"] == "crash: MemoryError (address-space limit)"
    assert results[5]["error"].startswith("crash: over the 2 s limit")
    assert results[4] == {"echo": "c"} and results[6] == {"echo": "d"}
    assert peer.crashes == 2  # the MemoryError was caught in the child, which lives on


def test_progress_without_a_terminal_prints_plain_lines(monkeypatch, capsys):
    # a benchmark's output goes to a log file or CI more often than to a terminal: the rich bar
    # draws nothing there, so plain lines say how far it got
    from ananke.bench import common

    monkeypatch.setattr(common, "PLAIN_PROGRESS_EVERY_S", 0.0)
    with common.progress("suite", 3) as advance:
        for _ in range(3):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["suite: 1/3", "suite: 2/3", "suite: 3/3"]
