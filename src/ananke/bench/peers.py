"""peers: the same JSON-schema generation tasks through Ananke and the tools users pick instead.

(a) Ananke local (`Ananke("local").generate`), (b) llama-cpp-python's own grammar sampler
(`LlamaGrammar.from_json_schema`, GBNF) and (c) Outlines with its llama.cpp model — all on the same
GGUF, prompt tokens, thread count, temperature 0 and token cap. (a') is Ananke given the schema with
its objects closed the way (b) and (c) close them (no undeclared property unless
`additionalProperties` allows it, where JSON Schema allows any), to separate that difference from
speed; its outputs are still checked against the original schema. Per task the three run one after
the other in a rotating order, so machine noise spreads over all of them. End-to-end time includes
compiling the schema; every output is checked with the `jsonschema` validator.

The peers come with the `bench` extra (`pip install 'ananke[bench]'`); a peer that cannot be
imported is skipped and the reason is recorded.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib.metadata import PackageNotFoundError, version

from ananke.bench.common import (
    BenchContext,
    header,
    log,
    pct,
    progress,
    ratio,
    save_plot,
    table,
    target_note,
    update_results_md,
    write_report,
)
from ananke.bench.tasks import PROMPT, SchemaTask, maskbench_tasks


def schema_accepts(schema: str, text: str) -> tuple[bool, str | None]:
    """Whether jsonschema (the schema's own draft, formats as annotations) accepts the output."""
    import jsonschema

    try:
        instance = json.loads(text)
    except ValueError as exc:
        return False, f"not JSON: {exc}"
    from ananke.constraints.syntax import NotChecked
    from ananke.constraints.validate import with_timed_patterns

    parsed = json.loads(schema)
    validator = jsonschema.validators.validator_for(parsed, default=jsonschema.Draft202012Validator)
    try:  # patterns through the regex module (with `re`, a catastrophic one stops the bench)
        error = jsonschema.exceptions.best_match(with_timed_patterns(validator)(parsed).iter_errors(instance))
    except NotChecked as exc:
        return False, f"not checked: {exc}"
    return error is None, None if error is None else error.message[:200]


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


class AnankePeer:
    name = "ananke"

    def __init__(self, threads: int) -> None:
        from ananke import Ananke
        from ananke.engines.llamacpp import shared_runner
        from ananke.engines.model import default_model_path

        self.loop = asyncio.new_event_loop()
        self.client = Ananke("local")  # fresh compile cache: every schema is compiled in the run
        self.engine = shared_runner(default_model_path())  # the one the client uses

    def run(
        self, task: SchemaTask, prompt_tokens: list[int], prompt_text: str, limits: tuple[int, float]
    ) -> dict:
        from ananke.errors import ConstraintCompileError

        max_tokens, _ = limits  # no time cap needed: Ananke decodes at the model's speed

        self.engine.forget_prompts()  # like the peers' llm.reset(): no prompt reuse between runs
        try:
            response = self.loop.run_until_complete(self.client.generate(task.request(max_tokens)))
        except ConstraintCompileError as exc:
            return {"compile_error": exc.reason[:200]}
        m = response.metadata
        return {
            "text": response.text,
            "tokens": m.tokens_generated,
            "compile_s": m.constraint_compile_time_ms / 1000,
            "finish": m.finish_reason,
            "mask_total_ms": m.mask_time_us / 1000,
        }

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def closed_objects(schema: str) -> str:
    """The schema narrowed as llama-cpp-python's and Outlines' converters narrow it: an object with
    `properties` and no `additionalProperties` admits no other key. Every instance of the result is
    an instance of the original (a constraint is only added)."""
    from ananke.constraints.schemas import edit

    def close(pointer: str, node: dict) -> None:
        opened = ("additionalProperties", "patternProperties", "unevaluatedProperties")
        if isinstance(node.get("properties"), dict) and not any(k in node for k in opened):
            node["additionalProperties"] = False

    return json.dumps(edit(json.loads(schema), close))


class AnankeClosedPeer(AnankePeer):
    name = "ananke_closed"

    def run(self, task: SchemaTask, *args) -> dict:
        return super().run(SchemaTask(task.name, closed_objects(task.schema)), *args)


class LlamaCounter:
    """A llama-cpp-python stopping criterion: counts sampled tokens, stops at the time cap."""

    def __init__(self, deadline: float) -> None:
        self.deadline, self.tokens, self.capped = deadline, 0, False

    def __call__(self, input_ids, logits) -> bool:
        self.tokens += 1
        self.capped = time.perf_counter() > self.deadline
        return self.capped


def llama_complete(llm, prompt_tokens: list[int], limits: tuple[int, float], compile_s: float, **kw) -> dict:
    """One llama-cpp-python completion from a cold context at temperature 0 within `limits`
    (max_tokens, deadline); `kw` is how the peer constrains it (a grammar, a logits processor)."""
    from llama_cpp import StoppingCriteriaList

    max_tokens, deadline = limits
    counter = LlamaCounter(deadline)
    llm.reset()  # no prompt reuse from the previous task: every tool starts cold
    out = llm(
        prompt_tokens, max_tokens=max_tokens, temperature=0.0,
        stopping_criteria=StoppingCriteriaList([counter]), **kw,
    )  # fmt: skip
    return {
        "text": out["choices"][0]["text"],
        "tokens": out["usage"]["completion_tokens"],
        "compile_s": compile_s,
        "finish": "time_cap" if counter.capped else out["choices"][0]["finish_reason"],
    }


class LlamaGrammarPeer:
    name = "llama_cpp_grammar"

    def __init__(self, llm) -> None:
        self.llm = llm

    def run(
        self, task: SchemaTask, prompt_tokens: list[int], prompt_text: str, limits: tuple[int, float]
    ) -> dict:
        from llama_cpp import LlamaGrammar

        start = time.perf_counter()
        try:
            grammar = LlamaGrammar.from_json_schema(task.schema, verbose=False)
        except Exception as exc:  # the converter raises plain exceptions for what it cannot express
            return {"compile_error": f"{type(exc).__name__}: {exc}"[:200]}
        compile_s = time.perf_counter() - start
        return llama_complete(self.llm, prompt_tokens, limits, compile_s, grammar=grammar)


class OutlinesPeer:
    name = "outlines"

    def __init__(self, llm) -> None:
        import outlines

        self.outlines = outlines
        self.model = outlines.from_llamacpp(llm, chat_mode=False)  # the prompt is already templated

    def run(
        self, task: SchemaTask, prompt_tokens: list[int], prompt_text: str, limits: tuple[int, float]
    ) -> dict:
        max_tokens, deadline = limits
        from llama_cpp import StoppingCriteriaList
        from outlines.types import JsonSchema

        start = time.perf_counter()
        try:
            generator = self.outlines.Generator(self.model, JsonSchema(task.schema))
        except Exception as exc:  # Outlines raises ValueError/NotImplementedError for what it lacks
            return {"compile_error": f"{type(exc).__name__}: {exc}"[:200]}
        compile_s = time.perf_counter() - start
        counter = LlamaCounter(deadline)
        text = generator(
            prompt_text,
            max_tokens=max_tokens,
            temperature=0.0,
            stopping_criteria=StoppingCriteriaList([counter]),
        )
        finish = "time_cap" if counter.capped else ("length" if counter.tokens >= max_tokens else "stop")
        return {"text": text, "tokens": counter.tokens, "compile_s": compile_s, "finish": finish}


class XGrammarPeer:
    """XGrammar through llama-cpp-python: a logits processor that advances an XGrammar matcher by
    the last sampled token and masks the logits with its token bitmask (XGrammar has no llama.cpp
    integration of its own; this is what its HF logits processor does, on numpy)."""

    name = "xgrammar"

    def __init__(self, llm, model_path: str) -> None:
        import xgrammar as xgr

        from ananke.bench.xgrammar_peer import tokenizer_info

        self.xgr, self.llm = xgr, llm
        self.info = tokenizer_info(model_path)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)

    def run(
        self, task: SchemaTask, prompt_tokens: list[int], prompt_text: str, limits: tuple[int, float]
    ) -> dict:
        import numpy as np
        from llama_cpp import LogitsProcessorList

        start = time.perf_counter()
        try:
            grammar = self.compiler.compile_json_schema(task.schema, any_whitespace=False)
        except Exception as exc:  # RuntimeError/ValueError for what it cannot express
            return {"compile_error": f"{type(exc).__name__}: {exc}"[:200]}
        compile_s = time.perf_counter() - start
        matcher = self.xgr.GrammarMatcher(grammar)
        bitmask = self.xgr.allocate_token_bitmask(1, self.info.vocab_size)
        mask_ms: list[float] = []
        n_prompt = len(prompt_tokens)

        def mask(input_ids, scores):
            began = time.perf_counter()
            if len(input_ids) > n_prompt:
                matcher.accept_token(int(input_ids[-1]))
            matcher.fill_next_token_bitmask(bitmask)
            allowed = np.unpackbits(bitmask.numpy().view(np.uint8), bitorder="little")[: len(scores)]
            scores[allowed == 0] = -np.inf
            mask_ms.append((time.perf_counter() - began) * 1000)
            return scores

        out = llama_complete(
            self.llm, prompt_tokens, limits, compile_s, logits_processor=LogitsProcessorList([mask])
        )
        return {**out, "mask_ms": [round(m, 4) for m in mask_ms], "mask_total_ms": sum(mask_ms)}


# (tasks, max_tokens, seconds per generation); the prompt suite reads them too
QUICK_SIZE, FULL_SIZE = (2, 32, 8.0), (50, 64, 20.0)


def peer_llama(model_path: str, threads: int):
    """llama-cpp-python's own `Llama`, with the weight buffers Ananke's engine uses.

    `Llama()` takes no `use_extra_bufts`; it reads llama_model_default_params() while loading,
    so the bindings' function is wrapped (see ananke.engines.model.use_extra_buffers: on AMX CPUs the
    default crashes on every prompt).
    """
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    from ananke.engines.model import use_extra_buffers

    defaults = bindings.llama_model_default_params

    def params():
        p = defaults()
        p.use_extra_bufts = use_extra_buffers()
        return p

    bindings.llama_model_default_params = params
    try:
        return llama_cpp.Llama(
            model_path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False
        )
    finally:
        bindings.llama_model_default_params = defaults


TOOLS = ["ananke", "ananke_closed", "llama_cpp_grammar", "outlines", "xgrammar"]
WORKLOADS = ["Github_easy", "Github_medium"]  # the harder one is where the tools differ
PEER_MEMORY_BYTES = 12 << 30  # per tool's child process (Outlines grew past 24 GB on one schema)


def make_peer(tool: str, threads: int, model_path: str):
    if tool == "ananke":
        return AnankePeer(threads)
    if tool == "ananke_closed":
        return AnankeClosedPeer(threads)
    llm = peer_llama(model_path, threads)
    if tool == "llama_cpp_grammar":
        return LlamaGrammarPeer(llm)
    if tool == "outlines":
        return OutlinesPeer(llm)
    return XGrammarPeer(llm, model_path)


WARM_UP = SchemaTask("warm-up", json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}}))


def peer_worker(tool: str, threads: int, model_path: str, max_tokens: int, warm_prompt: tuple):
    """In the tool's child process (ananke.bench.isolate): the tool, warmed up on a schema outside
    the task list (model load, Outlines' vocabulary index, JITs); returns what runs one task."""
    peer = make_peer(tool, threads, model_path)
    peer.run(WARM_UP, *warm_prompt, (max_tokens, time.perf_counter() + 60))

    def one(item: tuple) -> dict:
        name, schema, prompt_tokens, prompt_text, time_cap = item
        start = time.perf_counter()
        result = peer.run(
            SchemaTask(name, schema), prompt_tokens, prompt_text, (max_tokens, start + time_cap)
        )
        result["e2e_s"] = round(time.perf_counter() - start, 4)
        return result

    return one


def run(ctx: BenchContext) -> dict:
    from ananke.bench.isolate import Isolated
    from ananke.engines.llamacpp import render_prompt, shared_runner
    from ananke.engines.model import default_model_path

    n_tasks, max_tokens, time_cap = QUICK_SIZE if ctx.quick else FULL_SIZE
    model_path = str(default_model_path())
    engine = shared_runner(model_path)
    threads = engine.settings.threads
    workloads = {w: maskbench_tasks(ctx.need("maskbench"), n_tasks, subset=w) for w in WORKLOADS}
    n_total = sum(len(t) for t in workloads.values())
    warm_tokens = render_prompt(engine, WARM_UP.request(max_tokens))
    warm_prompt = (warm_tokens, engine.model.detokenize(warm_tokens).decode())

    # Every tool in its own child process with a memory limit and a per-task time limit (a peer
    # that segfaults or runs away is a result in its row, not the end of the run).
    peers: dict[str, Isolated] = {}
    skipped: dict[str, str] = {}
    for tool in TOOLS:
        peer = Isolated(
            "ananke.bench.peers:peer_worker", (tool, threads, model_path, max_tokens, warm_prompt),
            memory_bytes=PEER_MEMORY_BYTES, item_timeout_s=time_cap * 3 + 30,
        )  # fmt: skip
        if peer.start():
            peers[tool] = peer
        else:
            skipped[tool] = peer.start_error or "did not start"
            log(f"peers: {tool} skipped: {skipped[tool]}")
    tools = list(peers)

    rows = []
    with progress("peers", n_total * len(tools)) as advance:
        i = 0
        for workload, tasks in workloads.items():
            for task in tasks:
                prompt_tokens = render_prompt(engine, task.request(max_tokens))
                prompt_text = engine.model.detokenize(prompt_tokens).decode()
                order = tools[i % len(tools) :] + tools[: i % len(tools)]
                i += 1
                for tool in order:
                    result = peers[tool]((task.name, task.schema, prompt_tokens, prompt_text, time_cap))
                    if "text" in result:
                        result["valid"], result["invalid_reason"] = schema_accepts(
                            task.schema, result["text"]
                        )
                        result["compile_s"] = round(result["compile_s"], 5)
                    rows.append({"workload": workload, "task": task.name, "tool": tool, **result})
                    advance()
    crashes = {tool: peer.crashes for tool, peer in peers.items()}
    for peer in peers.values():
        peer.close()

    summary = {
        w: summarise([r for r in rows if r["workload"] == w], tools, [t.name for t in tasks])
        for w, tasks in workloads.items()
    }
    settings = {
        "model": engine.model.name,
        "prompt": PROMPT,
        "schema_in_prompt": True,
        "max_tokens": max_tokens,
        "time_cap_s": time_cap,
        "temperature": 0.0,
        "threads": threads,
        "workloads": {w: len(t) for w, t in workloads.items()},
        "peer_memory_limit_bytes": PEER_MEMORY_BYTES,
        "crashes": crashes,
        "peer_versions": {
            "llama_cpp_python": package_version("llama-cpp-python"),
            "outlines": package_version("outlines"),
            "outlines_core": package_version("outlines-core"),
            "xgrammar": package_version("xgrammar"),
        },
        "skipped": skipped,
    }
    report = write_report(ctx, "peers", settings, summary, {"rows": rows})
    write_markdown(ctx, report, rows, tools)
    return {
        w: {tool: {k: v for k, v in s.items() if not isinstance(v, dict)} for tool, s in by_tool.items()}
        for w, by_tool in summary.items()
    }


def summarise(rows: list[dict], tools: list[str], tasks: list[str]) -> dict:
    by = {(r["task"], r["tool"]): r for r in rows}
    # Tasks every tool generated for: the fair base for time and speed ratios.
    common = [t for t in tasks if all("text" in by.get((t, tool), {}) for tool in tools)]
    summary: dict = {}
    for tool in tools:
        mine = [by[(t, tool)] for t in tasks if (t, tool) in by]
        ran = [r for r in mine if "text" in r]
        on_common = [by[(t, tool)] for t in common]
        e2e = sum(r["e2e_s"] for r in on_common)
        tokens = sum(r["tokens"] for r in on_common)
        summary[tool] = {
            "tasks": len(mine),
            "compile_failures": sum("compile_error" in r for r in mine),
            "errors": sum("error" in r for r in mine),
            "crashes": sum(r.get("error", "").startswith("crash") for r in mine),
            "generated": len(ran),
            "schema_valid": sum(r["valid"] for r in ran),
            "valid_share_of_tasks": round(sum(r["valid"] for r in ran) / max(1, len(mine)), 3),
            "time_capped": sum(r.get("finish") == "time_cap" for r in ran),
            "common_tasks": len(common),
            "common_e2e_s": round(e2e, 2),
            "common_e2e_p50_s": round(pct([r["e2e_s"] for r in on_common], 50), 3),
            "common_tokens": tokens,
            "common_tok_s": round(tokens / e2e, 1) if e2e else 0.0,
            "compile_p50_ms": round(pct([r["compile_s"] * 1000 for r in ran], 50), 2),
            "compile_p99_ms": round(pct([r["compile_s"] * 1000 for r in ran], 99), 2),
        }
        masked = [r for r in ran if "mask_total_ms" in r]
        if masked:  # the tool's own account of its mask time, over the tokens it generated
            summary[tool]["mask_per_token_ms"] = round(
                sum(r["mask_total_ms"] for r in masked) / max(1, sum(r["tokens"] for r in masked)), 4
            )
        masks = [m for r in ran for m in r.get("mask_ms", [])]
        if masks:  # measured inside the tool's logits processor (XGrammar)
            summary[tool]["mask_p50_ms"] = round(pct(masks, 50), 4)
            summary[tool]["mask_p99_ms"] = round(pct(masks, 99), 4)
    if "ananke" not in summary:
        return summary
    base, closed = summary["ananke"], summary.get("ananke_closed")
    for tool in (t for t in tools if t in TARGETS):
        s = summary[tool]
        s["ananke_speedup_e2e"] = ratio(s["common_e2e_s"], base["common_e2e_s"])
        s["ananke_speedup_tok_s"] = ratio(base["common_tok_s"], s["common_tok_s"])
        if closed:  # the same comparison with objects closed on both sides
            s["ananke_closed_speedup_e2e"] = ratio(s["common_e2e_s"], closed["common_e2e_s"])
    return summary


TARGETS = {"llama_cpp_grammar": 2.0, "outlines": 1.5}
LABELS = {"ananke": "Ananke (local)", "ananke_closed": "Ananke, objects closed like the peers",
          "llama_cpp_grammar": "llama-cpp-python grammar", "outlines": "Outlines",
          "xgrammar": "XGrammar (logits processor)"}  # fmt: skip
COLORS = {"ananke": "#4477aa", "ananke_closed": "#66ccee", "llama_cpp_grammar": "#cc6677",
          "outlines": "#228833", "xgrammar": "#aa3377"}  # fmt: skip


def write_markdown(ctx: BenchContext, report: dict, rows: list[dict], tools: list[str]) -> None:
    summary, settings = report["summary"], report["settings"]
    workloads = list(summary)

    def draw(plt):
        fig, axes = plt.subplots(len(workloads), 3, figsize=(12, 3.2 * len(workloads)), squeeze=False)
        names = [
            LABELS[t].replace(", ", ",\n").replace(" grammar", "\ngrammar").replace(" (", "\n(")
            for t in tools
        ]
        colors = [COLORS[t] for t in tools]
        for row, workload in zip(axes, workloads, strict=True):
            s = summary[workload]
            measures = [
                ([s[t]["common_tok_s"] for t in tools], "end-to-end tok/s"),
                ([s[t]["compile_p50_ms"] for t in tools], "compile p50 (ms, log)"),
                ([s[t].get("mask_per_token_ms", 0) for t in tools], "mask time per token (ms)"),
            ]
            for ax, (values, label) in zip(row, measures, strict=True):
                ax.bar(names, values, color=colors)
                ax.set_ylabel(label, fontsize=8)
                ax.set_title(workload, fontsize=9)
                ax.tick_params(axis="x", labelsize=6)
            row[1].set_yscale("log")
        fig.tight_layout()
        return fig

    columns = ["tool", "tasks", "compile failures", "crashes", "schema-valid outputs", "time-capped",
               "e2e s (common tasks)", "p50 s per task", "tok/s e2e", "compile p50 / p99 ms",
               "mask ms per token (p50 / p99)", "Ananke speed-up (time / tok/s; time with objects closed)",
               "target"]  # fmt: skip
    sections = []
    for workload in workloads:
        s = summary[workload]
        table_rows = []
        for tool in tools:
            t = s[tool]
            speedup = target = ""
            if tool in TARGETS and "ananke_speedup_e2e" in t:
                speedup = f"{t['ananke_speedup_e2e']}× / {t['ananke_speedup_tok_s']}×"
                if "ananke_closed_speedup_e2e" in t:
                    speedup += f"; {t['ananke_closed_speedup_e2e']}×"
                target = f">= {TARGETS[tool]}×: {target_note(t['ananke_speedup_e2e'], TARGETS[tool])}"
            mask = str(t.get("mask_per_token_ms", ""))
            if "mask_p50_ms" in t:
                mask += f" ({t['mask_p50_ms']} / {t['mask_p99_ms']})"
            table_rows.append([
                LABELS[tool], t["tasks"], t["compile_failures"], t["crashes"],
                f"{t['schema_valid']} ({t['valid_share_of_tasks']:.0%})", t["time_capped"], t["common_e2e_s"],
                t["common_e2e_p50_s"], t["common_tok_s"], f"{t['compile_p50_ms']} / {t['compile_p99_ms']}",
                mask, speedup, target,
            ])  # fmt: skip
        sections.append(
            f"### {workload} ({s[tools[0]]['tasks'] if tools else 0} schemas)\n\n{table(columns, table_rows)}"
        )
    skipped = "".join(f"\n- **{LABELS[k]} skipped**: {v}" for k, v in settings["skipped"].items())
    versions = settings["peer_versions"]
    text = header(
        ctx,
        report,
        "Ananke vs llama-cpp-python's grammar sampler vs Outlines vs XGrammar, "
        + " and ".join(f"{n} {w}" for w, n in settings["workloads"].items())
        + " maskbench schemas",
    )
    tables = "\n".join(sections)
    text += f"""
Same GGUF ({settings["model"]}), same prompt tokens (chat template, schema in the prompt),
{settings["threads"]} threads, temperature 0, at most {settings["max_tokens"]} tokens and
{settings["time_cap_s"]:g} s per generation (a generation that hits the time cap is stopped and
counted, its output usually invalid). Each tool runs in its own child process with a
{settings["peer_memory_limit_bytes"] >> 30} GiB address-space limit and a time limit per task; a crash
or a blow-up is counted in its row (*crashes*) and the tool is restarted for the next task. Per task
the tools run one after another in a rotating order. End-to-end = compile + generate (+ Ananke's
own validation); time and tok/s ratios are over the tasks that every tool compiled. Mask time per
token is each tool's own account (Ananke: `mask_time_us`; XGrammar: its logits processor, which
also unpacks the bitmask onto the logits; the others do not report one). The peers' converters
close objects (no undeclared property unless `additionalProperties` allows it), where JSON Schema
allows any; Ananke closes them too by default where that only narrows the schema; *Ananke, objects
closed like the peers* gets the schema narrowed the peers' way and is checked against the original
one. The targets compare with plain Ananke.
Versions: llama-cpp-python {versions["llama_cpp_python"]}, Outlines {versions["outlines"]}
(outlines-core {versions["outlines_core"]}), XGrammar {versions["xgrammar"]}.{skipped}

{tables}
{save_plot(ctx, "peers", draw)}"""
    update_results_md(ctx, "peers", text)
