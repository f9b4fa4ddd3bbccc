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
    parsed = json.loads(schema)
    validator = jsonschema.validators.validator_for(parsed, default=jsonschema.Draft202012Validator)
    error = jsonschema.exceptions.best_match(validator(parsed).iter_errors(instance))
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


class LlamaGrammarPeer:
    name = "llama_cpp_grammar"

    def __init__(self, llm) -> None:
        self.llm = llm

    def run(
        self, task: SchemaTask, prompt_tokens: list[int], prompt_text: str, limits: tuple[int, float]
    ) -> dict:
        max_tokens, deadline = limits
        from llama_cpp import LlamaGrammar, StoppingCriteriaList

        start = time.perf_counter()
        try:
            grammar = LlamaGrammar.from_json_schema(task.schema, verbose=False)
        except Exception as exc:  # the converter raises plain exceptions for what it cannot express
            return {"compile_error": f"{type(exc).__name__}: {exc}"[:200]}
        compile_s = time.perf_counter() - start
        counter = LlamaCounter(deadline)
        self.llm.reset()  # no prompt reuse from the previous task: every tool starts cold
        out = self.llm(
            prompt_tokens, grammar=grammar, max_tokens=max_tokens, temperature=0.0,
            stopping_criteria=StoppingCriteriaList([counter]),
        )  # fmt: skip
        return {
            "text": out["choices"][0]["text"],
            "tokens": out["usage"]["completion_tokens"],
            "compile_s": compile_s,
            "finish": "time_cap" if counter.capped else out["choices"][0]["finish_reason"],
        }


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


def make_peers(threads: int, model_path: str) -> tuple[list, dict[str, str]]:
    """The tools that can run here, and {tool: why not} for those that cannot."""
    peers: list = [AnankePeer(threads), AnankeClosedPeer(threads)]
    skipped: dict[str, str] = {}
    try:
        llm = peer_llama(model_path, threads)
        peers.append(LlamaGrammarPeer(llm))
    except Exception as exc:
        skipped["llama_cpp_grammar"] = f"{type(exc).__name__}: {exc}"
        return peers, skipped
    try:
        peers.append(OutlinesPeer(llm))
    except Exception as exc:  # not installed (no `bench` extra), or broken on this platform
        skipped["outlines"] = f"{type(exc).__name__}: {exc}"
    return peers, skipped


def run(ctx: BenchContext) -> dict:
    from ananke.engines.llamacpp import render_prompt, shared_runner
    from ananke.engines.model import default_model_path

    n_tasks, max_tokens, time_cap = QUICK_SIZE if ctx.quick else FULL_SIZE
    model_path = default_model_path()
    engine = shared_runner(model_path)
    peers, skipped = make_peers(engine.settings.threads, model_path)
    for name, reason in skipped.items():
        log(f"peers: {name} skipped: {reason}")
    tasks = maskbench_tasks(ctx.need("maskbench"), n_tasks)  # every schema, compiling or not

    # Warm-up on a schema outside the task list: model loads, Outlines' vocabulary index, JITs.
    warm = SchemaTask("warm-up", json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}}))
    warm_tokens = render_prompt(engine, warm.request(max_tokens))
    for peer in peers:
        peer.run(
            warm,
            warm_tokens,
            engine.model.detokenize(warm_tokens).decode(),
            (max_tokens, time.perf_counter() + 60),
        )

    rows = []
    with progress("peers", len(tasks) * len(peers)) as advance:
        for i, task in enumerate(tasks):
            prompt_tokens = render_prompt(engine, task.request(max_tokens))
            prompt_text = engine.model.detokenize(prompt_tokens).decode()
            order = peers[i % len(peers) :] + peers[: i % len(peers)]
            for peer in order:
                start = time.perf_counter()
                try:
                    result = peer.run(task, prompt_tokens, prompt_text, (max_tokens, start + time_cap))
                except Exception as exc:  # a crash of one tool on one task is a result, not the end
                    result = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                result["e2e_s"] = round(time.perf_counter() - start, 4)
                if "text" in result:
                    result["valid"], result["invalid_reason"] = schema_accepts(task.schema, result["text"])
                    result["compile_s"] = round(result["compile_s"], 5)
                rows.append({"task": task.name, "tool": peer.name, **result})
                advance()
    for peer in peers:
        if hasattr(peer, "close"):
            peer.close()

    tools = [p.name for p in peers]
    summary = summarise(rows, tools, [t.name for t in tasks])
    settings = {
        "model": engine.model.name,
        "prompt": PROMPT,
        "schema_in_prompt": True,
        "max_tokens": max_tokens,
        "time_cap_s": time_cap,
        "temperature": 0.0,
        "threads": engine.settings.threads,
        "tasks": len(tasks),
        "peer_versions": {
            "llama_cpp_python": package_version("llama-cpp-python"),
            "outlines": package_version("outlines"),
            "outlines_core": package_version("outlines-core"),
        },
        "skipped": skipped,
    }
    report = write_report(ctx, "peers", settings, summary, {"rows": rows})
    write_markdown(ctx, report, rows, tools)
    return {tool: {k: v for k, v in s.items() if not isinstance(v, dict)} for tool, s in summary.items()}


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
        }
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
          "llama_cpp_grammar": "llama-cpp-python grammar", "outlines": "Outlines"}  # fmt: skip
COLORS = {"ananke": "#4477aa", "ananke_closed": "#66ccee", "llama_cpp_grammar": "#cc6677",
          "outlines": "#228833"}  # fmt: skip


def write_markdown(ctx: BenchContext, report: dict, rows: list[dict], tools: list[str]) -> None:
    s, settings = report["summary"], report["settings"]

    def draw(plt):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        names = [LABELS[t].replace(", ", ",\n").replace(" grammar", "\ngrammar") for t in tools]
        axes[0].bar(
            names,
            [s[t]["common_tok_s"] for t in tools],
            color=[COLORS[t] for t in tools],
        )
        axes[0].set_ylabel("end-to-end tok/s (common tasks)")
        axes[1].bar(
            names,
            [s[t]["valid_share_of_tasks"] for t in tools],
            color=[COLORS[t] for t in tools],
        )
        axes[1].set_ylabel("share of tasks with schema-valid output")
        axes[1].set_ylim(0, 1)
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7)
        return fig

    columns = ["tool", "tasks", "compile failures", "schema-valid outputs", "time-capped",
               "e2e s (common tasks)", "p50 s per task", "tok/s e2e", "compile p50 ms",
               "Ananke speed-up (time / tok/s; time with objects closed)", "target"]  # fmt: skip
    table_rows = []
    for tool in tools:
        t = s[tool]
        speedup = target = ""
        if tool in TARGETS:
            speedup = f"{t['ananke_speedup_e2e']}× / {t['ananke_speedup_tok_s']}×"
            if "ananke_closed_speedup_e2e" in t:
                speedup += f"; {t['ananke_closed_speedup_e2e']}×"
            target = f">= {TARGETS[tool]}×: {target_note(t['ananke_speedup_e2e'], TARGETS[tool])}"
        table_rows.append([
            LABELS[tool], t["tasks"], t["compile_failures"] + t["errors"],
            f"{t['schema_valid']} ({t['valid_share_of_tasks']:.0%})", t["time_capped"], t["common_e2e_s"],
            t["common_e2e_p50_s"], t["common_tok_s"], t["compile_p50_ms"], speedup, target,
        ])  # fmt: skip
    skipped = "".join(f"\n- **{LABELS[k]} skipped**: {v}" for k, v in settings["skipped"].items())
    versions = settings["peer_versions"]
    text = header(
        ctx,
        report,
        f"Ananke vs llama-cpp-python's grammar sampler vs Outlines, {settings['tasks']} maskbench schemas",
    )
    text += f"""
Same GGUF ({settings["model"]}), same prompt tokens (chat template, schema in the prompt),
{settings["threads"]} threads, temperature 0, at most {settings["max_tokens"]} tokens and
{settings["time_cap_s"]:g} s per generation (a generation that hits the time cap is stopped and
counted, its output usually invalid). Per task the tools run one after another in a rotating
order. End-to-end = compile + generate (+ Ananke's own validation); time and tok/s ratios are over
the tasks that every tool compiled. The peers' converters close objects (no undeclared property
unless `additionalProperties` allows it), where JSON Schema and Ananke allow any; *Ananke, objects
closed like the peers* gets the schema narrowed the same way (so its prompt shows the narrowed
schema) and is checked against the original one. The targets compare with plain Ananke.
Versions: llama-cpp-python {versions["llama_cpp_python"]},
Outlines {versions["outlines"]} (outlines-core {versions["outlines_core"]}).{skipped}

{table(columns, table_rows)}
{save_plot(ctx, "peers", draw)}"""
    update_results_md(ctx, "peers", text)
