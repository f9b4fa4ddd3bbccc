"""The `ananke bench` command (registered on the main CLI in ananke.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ananke.bench import SUITES, run_suites
from ananke.bench.common import BenchContext, default_data_dir, log


def bench(
    suite: Annotated[str, typer.Argument(help=f"One of: {', '.join(SUITES)}, or all.")],
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="A small run for smoke tests, written to <suite>-quick.* and RESULTS-quick.md."
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", help="Benchmarks folder: results/<suite>.json, plots and RESULTS.md.")
    ] = Path("benchmarks"),
    data: Annotated[
        Path | None, typer.Option("--data", help="Shared data folder (default: ../shared/data).")
    ] = None,
    shared_machine: Annotated[
        bool, typer.Option("--shared-machine", help="Note in the results that other jobs shared the machine.")
    ] = False,
) -> None:
    """Run a benchmark suite and write its results (JSON, RESULTS.md, PNG plots)."""
    names = list(SUITES) if suite == "all" else [suite]
    if suite != "all" and suite not in SUITES:
        raise typer.BadParameter(f"unknown suite {suite!r}; choose from {', '.join([*SUITES, 'all'])}")
    ctx = BenchContext(quick=quick, out=out, data=data or default_data_dir(), shared_machine=shared_machine)
    for name in names:
        log(f"bench {name}{' (quick)' if quick else ''} …")
        outcome = run_suites([name], ctx)[name]
        print(json.dumps({"suite": name, "seconds": outcome["seconds"], **outcome["summary"]}, indent=1))
    for path in ctx.written:
        log(f"wrote {path}")
