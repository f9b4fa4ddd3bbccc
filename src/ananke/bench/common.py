"""Shared parts of the benchmark suites: where data and results live, environment facts, result
files, RESULTS.md sections, progress bars and optional plots."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# The shared data sits beside the checkout (`../shared/data` from the repository root).
ENV_DATA = "ANANKE_BENCH_DATA"
SHARED_NOTE = (
    "The machine was shared with other jobs while this ran: absolute times are noisy; the sides of "
    "each comparison were interleaved in one run, so read the ratios."
)


def default_data_dir() -> Path:
    """$ANANKE_BENCH_DATA, else `../shared/data` from the working directory or the source checkout."""
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA])
    candidates = [
        Path.cwd().parent / "shared" / "data",
        Path(__file__).resolve().parents[4] / "shared" / "data",
    ]
    return next((c for c in candidates if c.is_dir()), candidates[0])


@dataclass
class BenchContext:
    """What every suite gets: the run mode and where to read data and write results."""

    quick: bool
    out: Path  # the benchmarks folder: results/<suite>.json and RESULTS.md go under it
    data: Path
    shared_machine: bool = False  # say so in the report: timings are noisier
    written: list[Path] = field(default_factory=list)

    @property
    def results_dir(self) -> Path:
        return self.out / "results"

    def stem(self, suite: str) -> str:
        return f"{suite}-quick" if self.quick else suite

    def need(self, relative: str) -> Path:
        path = self.data / relative
        if not path.exists():
            raise SystemExit(f"benchmark data not found: {path} (set --data or ${ENV_DATA})")
        return path


def environment() -> dict:
    import llguidance

    from ananke import __version__

    try:
        import llama_cpp

        llama_version = llama_cpp.__version__
    except ImportError:
        llama_version = None
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {
            "ananke": __version__,
            "llguidance": llguidance.__version__,
            "llama_cpp_python": llama_version,
            "python": platform.python_version(),
        },
        "machine": {
            "platform": platform.platform(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def write_report(ctx: BenchContext, suite: str, settings: dict, summary: dict, raw: dict) -> dict:
    report = {
        "suite": suite,
        "quick": ctx.quick,
        **environment(),
        "shared_machine": ctx.shared_machine,
        "settings": settings,
        "summary": summary,
        **raw,
    }
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.results_dir / f"{ctx.stem(suite)}.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    ctx.written.append(path)
    return report


def header(ctx: BenchContext, report: dict, title: str) -> str:
    """The first lines of a suite's RESULTS.md section."""
    machine = report["machine"]
    lines = [
        f"## {report['suite']} — {title}",
        "",
        f"Run {report['when']} on {machine['cores']} cores ({machine['processor']}), "
        f"ananke {report['versions']['ananke']}, llguidance {report['versions']['llguidance']}, "
        f"llama-cpp-python {report['versions']['llama_cpp_python']}"
        + (" — quick run (smoke test), not for comparison." if ctx.quick else "."),
        f"Raw numbers: `results/{ctx.stem(report['suite'])}.json`.",
    ]
    if ctx.shared_machine:
        lines.append(f"\n{SHARED_NOTE}")
    return "\n".join(lines) + "\n"


def table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def update_results_md(ctx: BenchContext, suite: str, markdown: str) -> Path:
    """Replace (or append) the `## {suite}` section of RESULTS.md (RESULTS-quick.md for --quick)."""
    path = ctx.out / ("RESULTS-quick.md" if ctx.quick else "RESULTS.md")
    text = (
        path.read_text() if path.exists() else "# Benchmark results\n\nRegenerate with `ananke bench all`.\n"
    )
    start = text.find(f"\n## {suite} ")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + (text[end:] if end >= 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n\n" + markdown.strip() + "\n")
    if path not in ctx.written:
        ctx.written.append(path)
    return path


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def target_note(value: float | None, target: float, higher_is_better: bool = True) -> str:
    """'met' or 'missed by N%' for a number against its target."""
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    off = (target - value) / target if higher_is_better else (value - target) / target
    return f"missed by {off:.0%}"


PLAIN_PROGRESS_EVERY_S = 30.0


@contextmanager
def progress(description: str, total: int) -> Iterator:
    """A rich progress bar on a terminal, else (a log file, CI) a plain line on stderr every 30 s
    and at the end; yields `advance()`."""
    if not sys.stderr.isatty():
        yield from _plain_progress(description, total)
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True, redirect_stdout=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def _plain_progress(description: str, total: int) -> Iterator:
    started = last = time.monotonic()
    done = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= PLAIN_PROGRESS_EVERY_S or done == total:
            last = now
            print(f"{description}: {done}/{total} ({now - started:.0f} s)", file=sys.stderr, flush=True)

    yield advance


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None (plots are skipped) when not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_plot(ctx: BenchContext, suite: str, draw) -> str:
    """Draw with `draw(plt)` into results/<suite>.png; return a markdown line for RESULTS.md."""
    plt = pyplot()
    if plt is None:
        return "_Plot skipped: matplotlib is not installed (`pip install 'ananke[bench]'`)._\n"
    fig = draw(plt)
    path = ctx.results_dir / f"{ctx.stem(suite)}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    ctx.written.append(path)
    return f"![{suite}](results/{path.name})\n"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
