"""`ananke bench`: benchmark suites that write results/<suite>.json, RESULTS.md and plots.

A suite is a module with `run(ctx: BenchContext) -> dict` (its summary); SUITES maps its name to
the module, imported only when the suite runs (peers needs the `bench` extra, others do not).
Register a new suite by adding one line here.
"""

from __future__ import annotations

import importlib
import time

from ananke.bench import overview
from ananke.bench.common import BenchContext, default_data_dir

SUITES: dict[str, str] = {
    "decode": "ananke.bench.decode",
    "compile": "ananke.bench.compile",
    "peers": "ananke.bench.peers",
    "compliance": "ananke.bench.compliance",
    "concurrency": "ananke.bench.concurrency",
    "code": "ananke.bench.code",
    "finish": "ananke.bench.finish",
    "tools": "ananke.bench.tools",
    "coverage": "ananke.bench.coverage",
    "prompt": "ananke.bench.prompt",
    "service": "ananke.bench.service",
    "load": "ananke.bench.load",
    "isolation": "ananke.bench.isolation",
    "corpus": "ananke.bench.corpus",
}


def run_suites(names: list[str], ctx: BenchContext) -> dict[str, dict]:
    """Run the named suites in order; returns {suite: {"summary", "seconds"}}."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; choose from {[*SUITES, 'all']}")
    outcomes = {}
    for name in names:
        start = time.perf_counter()
        summary = importlib.import_module(SUITES[name]).run(ctx)
        outcomes[name] = {"summary": summary, "seconds": round(time.perf_counter() - start, 1)}
        overview.update(ctx)
    return outcomes


__all__ = ["SUITES", "BenchContext", "default_data_dir", "run_suites"]
