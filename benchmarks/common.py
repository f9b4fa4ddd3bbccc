"""Shared parts of the scripts service.py and load.py (the suites of `ananke bench` live in ananke.bench)."""

from __future__ import annotations

import json
from pathlib import Path

from ananke.bench.common import environment, pct

__all__ = ["ROOT", "environment", "pct", "update_results_md", "write_json"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def write_json(name: str, report: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def update_results_md(section: str, markdown: str) -> None:
    """Replace (or append) the `## {section}` part of benchmarks/RESULTS.md."""
    path = ROOT / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(f"## {section}")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text.rstrip() + "\n\n" + markdown.strip() + "\n")
