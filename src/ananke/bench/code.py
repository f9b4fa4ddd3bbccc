"""code: the code-task benchmark of `benchmarks/code_tasks` (issue 9), run from a checkout.

Unconstrained vs grammar-constrained vs repair loop on the embedded model; the tasks, checks and
the table live in benchmarks/code_tasks (they need the checkout's fixtures), this only runs them
the `ananke bench` way: results/code.json and a RESULTS.md section.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ananke.bench.common import BenchContext, header, update_results_md, write_report

CHECKOUT = Path(__file__).resolve().parents[3]  # src/ananke/bench/code.py → the repository


def run(ctx: BenchContext) -> dict:
    if not (CHECKOUT / "benchmarks" / "code_tasks" / "tasks.py").is_file():
        raise SystemExit(f"the code suite needs a checkout with benchmarks/code_tasks (looked in {CHECKOUT})")
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    from benchmarks.code_tasks import markdown
    from benchmarks.code_tasks import run as run_tasks

    result = run_tasks(ctx.quick)
    raw = {k: v for k, v in result.items() if k != "summary"}
    settings = {"quick": ctx.quick, "concurrency": result["concurrency"], "temperature": 0.0}
    report = write_report(ctx, "code", settings, result["summary"], raw)
    table = markdown(result).split("\n", 1)[1]  # its own title line replaced by the suite header
    title = "code tasks, unconstrained vs grammar vs repair loop"
    update_results_md(ctx, "code", header(ctx, report, title) + table)
    return result["summary"]
