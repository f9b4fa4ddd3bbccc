"""The code benchmark: small Python, JavaScript and SQL tasks on the embedded model, three ways.

* unconstrained: the model answers freely; the code block is extracted.
* grammar: the output is constrained with an `ananke.grammars` grammar (python_function,
  javascript_function, sql_select over the fixture's tables).
* repair: unconstrained, with `max_attempts=3`: an output failing its `syntax:<language>` check
  is regenerated with the error in the prompt.

For each, the share of outputs that are syntax-valid (Python: `compile()`; JavaScript and SQL:
tree-sitter, independent of the grammar) and that pass the task's checks (tasks.py).
All at temperature 0 with seed 1 (retries sample warmer, seeded); `concurrency` requests run at
once on one client (the engine batches them), so per-task seconds include waiting for others.
`ananke bench code [--quick]` (`--quick`: one task per language, a smoke run) writes
results/code.json and a RESULTS.md section; an interrupted run resumes from its journal
(results/code.journal.jsonl).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

from ananke import Ananke, PyConstraintIR, PyGenerationContext, PyGenerationRequest, grammars
from ananke.bench.code_tasks import FIXTURE, TABLES, TASKS, Task
from ananke.bench.common import BenchContext, header, update_results_md, write_report
from ananke.constraints.syntax import check_syntax

ARMS = ("unconstrained", "grammar", "repair")
LANGUAGES = ("python", "javascript", "sql")
CHECK_TIMEOUT_S = 30  # generous: the machine may be shared and slow
GENERATION_TIMEOUT_S = 3600  # shares are measured here, not latency


def grammar_of(task: Task) -> str:
    if task.language == "python":
        return grammars.python_function(task.name, task.params, task.returns)
    if task.language == "javascript":
        return grammars.javascript_function(task.name, task.params)
    return grammars.sql_select(TABLES)


def request_of(task: Task, arm: str) -> PyGenerationRequest:
    constraints = (
        [PyConstraintIR(f"{task.language}_shape", grammar=grammar_of(task))] if arm == "grammar" else []
    )
    return PyGenerationRequest(
        task.prompt,
        constraints,
        max_tokens=task.max_tokens,
        temperature=0.0,
        context=PyGenerationContext(language=task.language),
        seed=1,
        max_attempts=3 if arm == "repair" else None,
    )


# ---------------------------------------------------------------- checks


def syntax_error(task: Task, code: str) -> str | None:
    """None when the code is valid in its language (Python: compile(); others: tree-sitter)."""
    if task.language == "python":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            try:
                compile(code, "<answer>", "exec")
            except (SyntaxError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}"
        return None
    return check_syntax(code, task.language)


def check_error(task: Task, code: str) -> str | None:
    """None when the code passes the task's checks, else why not."""
    if task.language == "python":
        program = code + "\n\n" + "\n".join(task.asserts) + "\n"
        return _run([sys.executable, "-I", "-c", program])
    if task.language == "javascript":
        if f"function {task.name}(" not in code:
            return f"no function {task.name} is declared"
        node = shutil.which("node")
        if node is None:
            return None  # syntax and declaration only (reported in the results' "checks")
        cases = " && ".join(f"({a})" for a in task.asserts)
        program = code + f"\nif (!({cases})) {{ console.error('a case failed'); process.exit(1); }}\n"
        return _run([node, "-e", program])
    return _sql_error(task, code)


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {CHECK_TIMEOUT_S} s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1][:300] if lines else f"exit status {done.returncode}"
    return None


def _sql_error(task: Task, query: str) -> str | None:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(FIXTURE)
        expected = db.execute(task.reference).fetchall()
        try:
            got = db.execute(query).fetchall()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            return f"sqlite: {exc}"
    finally:
        db.close()
    same = got == expected if task.ordered else sorted(map(repr, got)) == sorted(map(repr, expected))
    return None if same else f"rows {got[:5]!r} differ from the expected {expected[:5]!r}"


# ---------------------------------------------------------------- the run


async def _one(client: Ananke, task: Task, arm: str) -> dict:
    started = time.perf_counter()
    response = await client.generate(request_of(task, arm))
    seconds = time.perf_counter() - started
    code = response.code
    syntax = syntax_error(task, code)
    checks = check_error(task, code) if syntax is None else "not run: syntax error"
    return {
        "task": task.id,
        "language": task.language,
        "arm": arm,
        "syntax_valid": syntax is None,
        "passed": checks is None,
        "syntax_error": syntax,
        "check_error": checks,
        "attempts": response.metadata.attempts,
        "tokens": response.metadata.tokens_generated,
        "finish_reason": response.metadata.finish_reason,
        "seconds": round(seconds, 2),
        "code": code,
    }


def _summary(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "tasks": n,
        "syntax_valid": sum(r["syntax_valid"] for r in rows),
        "passed": sum(r["passed"] for r in rows),
        "syntax_valid_share": round(sum(r["syntax_valid"] for r in rows) / n, 3) if n else 0.0,
        "passed_share": round(sum(r["passed"] for r in rows) / n, 3) if n else 0.0,
        "mean_attempts": round(sum(r["attempts"] for r in rows) / n, 2) if n else 0.0,
        "mean_seconds": round(sum(r["seconds"] for r in rows) / n, 2) if n else 0.0,
    }


async def _run_all(tasks: list[Task], progress, concurrency: int, journal: Path | None) -> list[dict]:
    """Every (task, arm) pair, `concurrency` at a time: the engine batches them (continuous
    batching), which on a CPU gives several times the throughput of one at a time.

    Each finished row is appended to `journal` (JSON lines) and rows already there are reused,
    so an interrupted run resumes where it stopped. A generation that fails (e.g. a timeout on
    an overloaded machine) is a row with `error`, counted as neither valid nor passing.
    """
    client = Ananke("local", timeout_secs=GENERATION_TIMEOUT_S)
    # languages interleaved, so a partial run already covers all three
    by_language = [[t for t in tasks if t.language == lang] for lang in LANGUAGES]
    order = [t for group in itertools.zip_longest(*by_language) for t in group if t is not None]
    jobs = [(task, arm) for task in order for arm in ARMS]
    previous = {}
    if journal is not None and journal.exists():
        for line in journal.read_text().splitlines():
            row = json.loads(line)
            previous[(row["task"], row["arm"])] = row
    gate = asyncio.Semaphore(concurrency)
    done: list[dict] = []

    async def one(task: Task, arm: str) -> dict:
        row = previous.get((task.id, arm))
        if row is None:
            async with gate:
                try:
                    row = await _one(client, task, arm)
                except Exception as exc:  # recorded, not fatal: one bad job must not lose the run
                    row = _failed_row(task, arm, exc)
            if journal is not None:
                with journal.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
        done.append(row)
        verdict = "pass" if row["passed"] else "syntax ok" if row["syntax_valid"] else "SYNTAX ERROR"
        if row.get("error"):
            verdict = "ERROR"
        progress(
            f"[{len(done)}/{len(jobs)}] {task.id:<22} {arm:<13} {verdict:<12} "
            f"attempts={row['attempts']} tokens={row['tokens']} {row['seconds']:.1f} s"
        )
        return row

    try:
        return list(await asyncio.gather(*(one(task, arm) for task, arm in jobs)))
    finally:
        await client.aclose()


def _failed_row(task: Task, arm: str, exc: Exception) -> dict:
    return {
        "task": task.id, "language": task.language, "arm": arm, "syntax_valid": False,
        "passed": False, "syntax_error": None, "check_error": None, "attempts": 0, "tokens": 0,
        "finish_reason": "error", "seconds": 0.0, "code": "", "error": f"{type(exc).__name__}: {exc}",
    }  # fmt: skip


def run_tasks(quick: bool = False, progress=None, concurrency: int = 6, journal: Path | None = None) -> dict:
    """Run the benchmark; the report (summary per arm and language, every output) as a dict."""
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    tasks = TASKS
    if quick:
        tasks = [t for lang in ("python", "javascript", "sql") for t in TASKS if t.language == lang]
        tasks = [
            t
            for lang in ("python", "javascript", "sql")
            for t in [u for u in tasks if u.language == lang][:1]
        ]
    started = time.perf_counter()
    rows = asyncio.run(_run_all(tasks, progress, concurrency, journal))
    return report_of(rows, quick, time.perf_counter() - started, concurrency, complete=True)


def markdown(report: dict) -> str:
    """A table of the shares per arm, overall and per language."""
    lines = [
        "## Code tasks (issue 9)",
        "",
        f"{report['summary']['grammar']['tasks']} tasks (Python, JavaScript, SQL) on the embedded model, "
        + ("" if report.get("complete", True) else "**a partial run (not every task yet)**, ")
        + "temperature 0. Syntax-valid: Python `compile()`, JavaScript/SQL tree-sitter. Checks: Python "
        "asserts in a subprocess, JavaScript cases under "
        f"{report['javascript_checks']}, SQL rows against a reference query on SQLite.",
        "",
        "| arm | syntax-valid | passes checks | mean attempts | mean s/task |",
        "|---|---|---|---|---|",
    ]
    for arm in ARMS:
        s = report["summary"][arm]
        lines.append(
            f"| {arm} | {s['syntax_valid']}/{s['tasks']} ({s['syntax_valid_share']:.0%}) | "
            f"{s['passed']}/{s['tasks']} ({s['passed_share']:.0%}) | "
            f"{s['mean_attempts']} | {s['mean_seconds']} |"
        )
    lines += ["", "| language | " + " | ".join(f"{a} syntax / pass" for a in ARMS) + " |", "|---" * 4 + "|"]
    for lang, arms in report["by_language"].items():
        cells = [
            f"{arms[a]['syntax_valid']}/{arms[a]['tasks']} / {arms[a]['passed']}/{arms[a]['tasks']}"
            for a in ARMS
        ]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    lines += ["", "Times are on a shared 2-core machine and noisy; the shares are the result."]
    return "\n".join(lines) + "\n"


def report_of(rows: list[dict], quick: bool, seconds: float, concurrency: int, complete: bool) -> dict:
    summary = {arm: _summary([r for r in rows if r["arm"] == arm]) for arm in ARMS}
    by_language = {
        lang: {arm: _summary([r for r in rows if r["arm"] == arm and r["language"] == lang]) for arm in ARMS}
        for lang in LANGUAGES
    }
    return {
        "benchmark": "code",
        "quick": quick,
        "complete": complete,
        "model": "embedded SmolLM2-135M (Ananke('local'))",
        "javascript_checks": "node" if shutil.which("node") else "tree-sitter syntax + declaration only",
        "seconds": round(seconds, 1),
        "concurrency": concurrency,
        "errors": sum(1 for r in rows if r.get("error")),
        "summary": summary,
        "by_language": by_language,
        "results": rows,
    }


def run(ctx: BenchContext) -> dict:
    journal = ctx.results_dir / f"{ctx.stem('code')}.journal.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    result = run_tasks(ctx.quick, journal=journal)
    journal.unlink()
    raw = {k: v for k, v in result.items() if k != "summary"}
    settings = {"quick": ctx.quick, "concurrency": result["concurrency"], "temperature": 0.0}
    report = write_report(ctx, "code", settings, result["summary"], raw)
    table = markdown(result).split("\n", 1)[1]  # its own title line replaced by the suite header
    title = "code tasks, unconstrained vs grammar vs repair loop"
    update_results_md(ctx, "code", header(ctx, report, title) + table)
    return result["summary"]


__all__ = ["ARMS", "markdown", "run", "run_tasks"]
