"""isolation: do 4 decoding requests keep their speed while a pathological constraint compiles?

Against `ananke serve`: 4 JSON-constrained requests decode at once (temperature 0, so every round
generates the same tokens), alone, and again while another client — its own process at the lowest
CPU priority, as if on another machine — keeps the server compiling heavy constraints (a
5,000-rule grammar, each one new so the cache cannot answer) until the 4 are done. Aggregate tok/s
of the 4 with ÷ without is the measure (target ≥ 0.8). Rounds alternate so machine noise hits both
sides. Grammar work runs on lower-priority threads (ananke.threads).
`--quick`: 1 round (else 5).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import httpx

from ananke import Ananke
from ananke.bench.common import (
    BenchContext,
    header,
    pct,
    ratio,
    table,
    target_note,
    update_results_md,
    write_report,
)
from ananke.bench.concurrency import short_requests
from ananke.bench.serve import ananke_serve

DECODING = 4
MAX_TOKENS = 96
TARGET_RATIO = 0.8
MAX_COMPILES = 200  # a bound on the compiling loop, whatever happens


def heavy_grammar(n: int, marker: int) -> str:
    """A chain of n rules; `marker` makes each one new to the compile cache."""
    rules = "\n".join(f'r{i}: "t{i}" r{i + 1} | "e{i}"' for i in range(n))
    return f'start: "m{marker}" r0\n{rules}\nr{n}: "end"'


async def decode_four(client: Ananke) -> dict:
    requests = short_requests(MAX_TOKENS)[:DECODING]
    started = time.perf_counter()
    responses = await asyncio.gather(*[client.generate(r) for r in requests])
    seconds = time.perf_counter() - started
    tokens = sum(r.metadata.tokens_generated for r in responses)
    return {"tokens": tokens, "seconds": round(seconds, 3), "tok_s": round(tokens / seconds, 1)}


def compile_loop(url: str, first_marker: int, started, stop, out) -> None:
    """In a child process at the lowest CPU priority (the client would be on another machine; its
    own work of building 130 KB requests is not the server's): compile new heavy grammars on the
    service one after another until `stop`, then put the times (ms) on `out`."""
    os.nice(19)
    times: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            for marker in range(first_marker, first_marker + MAX_COMPILES):
                body = {"constraints": [{"name": "heavy", "grammar": heavy_grammar(5000, marker)}]}
                begun = time.perf_counter()
                started.set()
                http.post("/v1/compile", json=body).raise_for_status()
                times.append((time.perf_counter() - begun) * 1000)
                if stop.is_set():
                    break
    except Exception as exc:  # the parent waits on `out`: it gets the reason, not a 10-minute wait
        started.set()
        out.put(f"compile loop failed after {len(times)} compiles: {exc!r}")
        return
    out.put(times)


async def rounds(url: str, n: int) -> list[dict]:
    decoder = Ananke(url, timeout_secs=600)
    await decode_four(decoder)  # warm-up: model, compile cache of the 4 requests
    spawn = multiprocessing.get_context("spawn")
    results = []
    for i in range(n):
        alone = await decode_four(decoder)
        started, stop, out = spawn.Event(), spawn.Event(), spawn.Queue()
        compiler = spawn.Process(target=compile_loop, args=(str(url), i * MAX_COMPILES, started, stop, out))
        compiler.start()
        await asyncio.to_thread(started.wait, 120)  # the first compile is on its way
        beside = await decode_four(decoder)
        stop.set()
        compile_ms = await asyncio.to_thread(out.get, True, 600)
        compiler.join(60)
        if isinstance(compile_ms, str):
            raise RuntimeError(compile_ms)
        results.append({"alone": alone, "beside_compiles": beside, "compiles": len(compile_ms),
                        "compile_ms": [round(t, 1) for t in compile_ms]})  # fmt: skip
    await decoder.aclose()
    return results


def run(ctx: BenchContext) -> dict:
    n = 1 if ctx.quick else 5
    with tempfile.TemporaryDirectory() as tmp, ananke_serve(log_path=Path(tmp) / "server.log") as url:
        results = asyncio.run(rounds(url, n))
    alone = sum(r["alone"]["tokens"] for r in results) / sum(r["alone"]["seconds"] for r in results)
    beside = sum(r["beside_compiles"]["tokens"] for r in results) / sum(
        r["beside_compiles"]["seconds"] for r in results
    )
    compile_ms = [t for r in results for t in r["compile_ms"]]
    summary = {
        "alone_tok_s": round(alone, 1),
        "beside_compiles_tok_s": round(beside, 1),
        "ratio_beside_over_alone": ratio(beside, alone),
        "compiles_during_decoding": sum(r["compiles"] for r in results),
        "heavy_compile_p50_ms": round(pct(compile_ms, 50), 1),
    }
    settings = {
        "decoding_requests": DECODING,
        "max_tokens": MAX_TOKENS,
        "rounds": n,
        "heavy": "5,000-rule grammar",
    }
    report = write_report(ctx, "isolation", settings, summary, {"rounds": results})
    rows = [
        [i + 1, r["alone"]["tok_s"], r["beside_compiles"]["tok_s"], r["compiles"]]
        for i, r in enumerate(results)
    ]
    update_results_md(
        ctx,
        "isolation",
        header(ctx, report, "4 requests decoding while a pathological constraint compiles")
        + f"""
{DECODING} JSON requests ({MAX_TOKENS} tokens max, temperature 0) through `ananke serve`, alone and
while a second client keeps the service compiling new 5,000-rule grammars (p50
{summary["heavy_compile_p50_ms"]} ms each). Aggregate tok/s of the 4 with ÷ without:
**{summary["ratio_beside_over_alone"]}** (target ≥ {TARGET_RATIO}:
{target_note(summary["ratio_beside_over_alone"], TARGET_RATIO)}).

{table(["round", "tok/s alone", "tok/s beside compiles", "compiles meanwhile"], rows)}""",
    )
    return summary
