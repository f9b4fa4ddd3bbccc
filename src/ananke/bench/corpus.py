"""corpus: every schema we have, through `ananke serve` — crash-freedom, not speed.

Each schema of `maskbench` (6,146 files) and of the JSON-Schema-Test-Suite (draft 2020-12, 383
schemas) goes, in strict and in relaxed mode, through `/v1/compile` and then a short
`/v1/generate` (16 tokens, the embedded model, temperature 0, one attempt). Every one must get
exactly one answer: a 4xx from compile or generate naming why, or a 200 whose output the service's
validator judged. Counted apart: 5xx, requests without an answer (a hang-up or a timeout) and
server crashes (the process died; it is restarted and the run goes on). Reports the server's RSS
after warm-up and at the end (and its peak), the slowest compiles and the 4xx reasons.
`--quick`: every 200th schema.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from ananke.bench.common import BenchContext, header, progress, table, update_results_md, write_report
from ananke.bench.compliance import JSTS_DIR
from ananke.bench.load import memory_mb, rss_mb
from ananke.bench.serve import ananke_serve
from ananke.bench.tasks import maskbench_files

MAX_TOKENS = 16
CONCURRENCY = 4  # the server's decoding slots: the queue never fills
REQUEST_TIMEOUT_S = 600.0  # generous: a loaded machine slows decoding; a 504 here would be ours
PROMPT = "Give one example instance of this schema as JSON."


@dataclass
class Item:
    source: str  # maskbench subset or test-suite file
    label: str
    schema: str  # JSON text


def corpus_items(data: Path, every: int = 1) -> list[Item]:
    """Every schema (every `every`-th for a quick run); each is run in both modes."""
    schemas: list[tuple[str, str, str]] = []
    for path in maskbench_files(data / "maskbench"):
        schemas.append(
            (path.stem.split("---")[0], path.stem, json.dumps(json.loads(path.read_text())["schema"]))
        )
    for path in sorted((data / JSTS_DIR).glob("*.json")):
        for i, case in enumerate(json.loads(path.read_text())):
            schemas.append((f"jsts/{path.stem}", f"{path.stem}#{i}", json.dumps(case["schema"])))
    return [Item(s, label, text) for s, label, text in schemas[::every]]


def reason_of(body: dict) -> str:
    """A 4xx message with its specifics (names, numbers, quoted text) blanked, for counting."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    message = re.sub(r"^constraint '[^']*': ", "", str(error.get("message", "")))
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "…", message)
    message = re.sub(r"\d+(\.\d+)?", "N", message)
    return f"{error.get('type', '?')}: {message[:90]}"


async def answer(http: httpx.AsyncClient, item: Item, mode: str, strict: dict | None = None) -> dict:
    """The one answer for an item in a mode: compile, then (when it compiles) a short generation.

    In relaxed mode a schema that compiles with nothing relaxed is the strict grammar: its strict
    generation stands for both (marked `generation_shared`) rather than being decoded twice."""
    constraint = {"name": "schema", "json_schema": item.schema}
    outcome: dict = {"source": item.source, "label": item.label, "mode": mode}
    started = time.perf_counter()
    try:
        compiled = await http.post("/v1/compile", json={"constraints": [constraint], "schema_mode": mode})
        outcome["stage"] = "compile"
        response = compiled
        if compiled.status_code == 200:
            outcome["compile_ms"] = compiled.json()["compile_time_ms"]
            nothing_relaxed = not compiled.json()["relaxed"]
            if (
                mode == "relaxed"
                and nothing_relaxed
                and strict is not None
                and strict.get("stage") == "generate"
            ):
                shared = {
                    k: strict[k]
                    for k in ("status", "judged", "satisfied", "finish_reason", "reason")
                    if k in strict
                }
                return {**outcome, **shared, "stage": "generate", "generation_shared": True,
                        "ms": round((time.perf_counter() - started) * 1000, 2)}  # fmt: skip
            outcome["stage"] = "generate"
            response = await http.post(
                "/v1/generate",
                json={
                    "prompt": PROMPT, "constraints": [constraint], "schema_mode": mode,
                    "max_tokens": MAX_TOKENS, "temperature": 0.0, "max_attempts": 1,
                    "timeout_secs": REQUEST_TIMEOUT_S / 2,
                },
            )  # fmt: skip
        outcome["status"] = response.status_code
        body = response.json()
        if response.status_code == 200:
            validation = body.get("validation")
            outcome["judged"] = validation is not None
            outcome["satisfied"] = bool(validation and validation.get("all_satisfied"))
            outcome["finish_reason"] = body["finish_reason"]
        else:
            outcome["reason"] = reason_of(body)
    except (httpx.HTTPError, ValueError) as exc:  # no answer: a hang-up, a timeout, a body not JSON
        outcome["status"], outcome["reason"] = 0, f"{type(exc).__name__}: {exc}"[:300]
    outcome["ms"] = round((time.perf_counter() - started) * 1000, 2)
    return outcome


async def run_items(url: str, items: list[Item], process, advance) -> list[dict]:
    """Answer items at CONCURRENCY; stops early (returning what it has) if the server dies."""
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    outcomes: list[dict] = []

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty() and process.poll() is None:
            item = queue.get_nowait()
            strict = await answer(http, item, "strict")
            pair = [strict, await answer(http, item, "relaxed", strict)]
            for outcome in pair:
                if outcome["status"] == 0 and process.poll() is not None:
                    outcome["crash"] = True  # the server died on (or while serving) this item
            outcomes.extend(pair)
            advance()

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        await asyncio.gather(*[worker(http) for _ in range(CONCURRENCY)])
    return outcomes


def run_corpus(ctx: BenchContext, items: list[Item], log_dir: Path) -> tuple[list[dict], dict]:
    """All items through servers (a new one after a crash); the outcomes and the memory figures."""
    outcomes: list[dict] = []
    memory: dict = {"servers_started": 0}
    remaining = list(items)
    with progress("corpus", len(items)) as advance:
        while remaining:
            memory["servers_started"] += 1
            with ananke_serve(log_path=log_dir / f"server-{memory['servers_started']}.log") as url:
                pid = url.process.pid
                if "rss_after_warmup_mb" not in memory:
                    warm = [Item("warm-up", "warm-up", '{"type": "integer"}')] * 4
                    asyncio.run(run_items(url, warm, url.process, lambda: None))
                    memory["rss_after_warmup_mb"] = round(rss_mb(pid), 1)
                done = asyncio.run(run_items(url, remaining, url.process, advance))
                if url.process.poll() is None:
                    memory["rss_end_mb"] = round(rss_mb(pid), 1)
                    memory["rss_peak_mb"] = round(memory_mb(pid, "VmHWM"), 1)
            outcomes += done
            answered = {o["label"] for o in done}
            remaining = [i for i in remaining if i.label not in answered]
    return outcomes, memory


def summarise(outcomes: list[dict], memory: dict, seconds: float) -> dict:
    statuses = Counter(o["status"] for o in outcomes)
    ok = [o for o in outcomes if o["status"] == 200]
    compiles = sorted((o for o in outcomes if "compile_ms" in o), key=lambda o: -o["compile_ms"])
    return {
        "items": len(outcomes),
        "answered": sum(1 for o in outcomes if o["status"]),
        "ok_200": len(ok),
        "ok_judged_by_validator": sum(o["judged"] for o in ok),
        "ok_satisfied": sum(o["satisfied"] for o in ok),
        "relaxed_generation_shared_with_strict": sum(1 for o in outcomes if o.get("generation_shared")),
        "client_errors_4xx": sum(1 for o in outcomes if 400 <= o["status"] < 500),
        "server_errors_5xx": sum(1 for o in outcomes if o["status"] >= 500),
        "no_answer": statuses.get(0, 0),
        "crashes": sum(1 for o in outcomes if o.get("crash")),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "finish_reasons": dict(Counter(o["finish_reason"] for o in ok).most_common()),
        "reasons_4xx": dict(Counter(o["reason"] for o in outcomes if o.get("reason")).most_common(25)),
        "slowest_compiles": [
            {"label": o["label"], "mode": o["mode"], "compile_ms": o["compile_ms"]} for o in compiles[:5]
        ],
        "slowest_request_ms": max((o["ms"] for o in outcomes), default=0.0),
        **memory,
        "wall_s": round(seconds, 1),
    }


def run(ctx: BenchContext) -> dict:
    items = corpus_items(ctx.data, every=200 if ctx.quick else 1)
    ctx.need("maskbench")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes, memory = run_corpus(ctx, items, Path(tmp))
    summary = summarise(outcomes, memory, time.perf_counter() - started)
    failures = [o for o in outcomes if o["status"] == 0 or o["status"] >= 500 or o.get("crash")]
    settings = {
        "max_tokens": MAX_TOKENS,
        "concurrency": CONCURRENCY,
        "prompt": PROMPT,
        "modes": ["strict", "relaxed"],
    }
    unsatisfied = [o for o in outcomes if o["status"] == 200 and not o["satisfied"]]
    raw = {"failures": failures, "unsatisfied": unsatisfied}
    report = write_report(ctx, "corpus", settings, summary, raw)
    s = summary
    by_source = Counter()
    for o in outcomes:
        by_source[(o["source"].split("/")[0], o["mode"], o["status"] // 100 if o["status"] else 0)] += 1
    sources = sorted({(k[0], k[1]) for k in by_source})
    rows = [[src, mode, *(by_source[(src, mode, c)] for c in (2, 4, 5, 0))] for src, mode in sources]
    slowest = ", ".join(
        f"{c['label']} ({c['mode']}) {c['compile_ms']:.0f} ms" for c in s["slowest_compiles"][:3]
    )
    reasons = table(
        ["4xx reason (specifics blanked)", "count"], [[r, n] for r, n in s["reasons_4xx"].items()]
    )
    update_results_md(
        ctx,
        "corpus",
        header(ctx, report, "every schema through `ananke serve`, strict and relaxed")
        + f"""
{s["items"]} answers ({len(items)} schemas × 2 modes), compile then {MAX_TOKENS} tokens at
temperature 0, {CONCURRENCY} schemas at a time. A relaxed compile that relaxed nothing is the strict
grammar: its strict generation stands for both ({s["relaxed_generation_shared_with_strict"]} times).
**{s["answered"]} answered, {s["server_errors_5xx"]} × 5xx,
{s["no_answer"]} without an answer, {s["crashes"]} crashes** ({s["servers_started"]} server
process(es)); {s["ok_200"]} × 200 (judged by the validator: {s["ok_judged_by_validator"]},
satisfied: {s["ok_satisfied"]}), {s["client_errors_4xx"]} × 4xx naming why. Server RSS
{s.get("rss_after_warmup_mb")} MB after warm-up → {s.get("rss_end_mb")} MB at the end (peak
{s.get("rss_peak_mb")} MB). Slowest compiles: {slowest}. Wall {s["wall_s"]} s.

{table(["source", "mode", "200", "4xx", "5xx", "no answer"], rows)}
{reasons}""",
    )
    return summary
