"""Shared parts of the benchmark scripts: environment facts, result files, RESULTS.md sections."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def environment() -> dict:
    import llama_cpp
    import llguidance

    from ananke import __version__

    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            "ananke": __version__,
            "llguidance": llguidance.__version__,
            "llama_cpp_python": llama_cpp.__version__,
            "python": platform.python_version(),
        },
        "machine": {"platform": platform.platform(), "cores": len(os.sched_getaffinity(0))},
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


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
