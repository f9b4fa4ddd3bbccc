"""finish: do constrained outputs come back complete and valid within max_tokens?

Three workloads through the public API (`Ananke("local")`, the embedded model):

* **email**: API.md's e-mail regex, "Give the support e-mail address of example.com",
  temperature 0.7, max_tokens 40, 20 seeds;
* **medium**: 50 `Github_medium` schemas of maskbench spread evenly over the visible files,
  temperature 0, max_tokens 128 and 256 (a schema strict mode refuses with the relaxed-mode hint
  runs relaxed, as its error tells the user; one that no mode takes counts as a failure);
* **qa**: 24 short questions with known answers, asked plainly and with a JSON answer schema
  (same prompts, max_tokens 32, temperature 0), so steering to a complete output can be seen not
  to cost accuracy.

Also, without generating: the prompt tokens of the peers suite's schemas (and the medium ones)
with the schema shown as the TypeScript-like outline against the raw JSON Schema text shown before.

For each output: satisfied (the independent validator), finish_reason, whether the budget closed
it, loop breaks, and "incomplete although a completion fitted": cut at the cap while the
shortest output found for its grammar fits in max_tokens (what budget-aware completion exists
to prevent).
"""

from __future__ import annotations

import asyncio
import json

from ananke.bench.common import (
    BenchContext,
    header,
    pct,
    progress,
    table,
    target_note,
    update_results_md,
    write_report,
)
from ananke.bench.tasks import PROMPT

EMAIL = r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$"
EMAIL_PROMPT = "Give the support e-mail address of example.com"
ANSWER_SCHEMA = json.dumps(
    {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 40}}, "required": ["answer"]}
)
QA = [
    ("What is the capital of France?", "paris"), ("What is the capital of Japan?", "tokyo"),
    ("What is the capital of Italy?", "rome"), ("What is the capital of Germany?", "berlin"),
    ("What is the capital of Spain?", "madrid"), ("What is the capital of England?", "london"),
    ("What is the capital of Russia?", "moscow"), ("What is the capital of Egypt?", "cairo"),
    ("What colour is a clear daytime sky?", "blue"), ("What colour is fresh grass?", "green"),
    ("What is 2 + 2?", "4"), ("What is 3 + 5?", "8"), ("What is 10 - 3?", "7"),
    ("What is 2 times 6?", "12"), ("What is the opposite of hot?", "cold"),
    ("What is the opposite of up?", "down"), ("Which day comes after Monday?", "tuesday"),
    ("What is the first month of the year?", "january"), ("On which planet do humans live?", "earth"),
    ("What animal says moo?", "cow"), ("How many legs does a spider have?", "8"),
    ("How many days are in a week?", "7"), ("What do bees make?", "honey"),
    ("What is frozen water called?", "ice"),
]  # fmt: skip


def _row(response, max_tokens: int, shortest: int | None) -> dict:
    meta = response.metadata
    cut = meta.finish_reason == "length"
    return {
        "satisfied": response.validation.all_satisfied,
        "finish_reason": meta.finish_reason,
        "tokens": meta.tokens_generated,
        "prompt_tokens": meta.prompt_tokens,
        "budget_closed": meta.budget_closed,
        "closing_tokens": meta.closing_tokens,
        "budget_steered": meta.budget_steered,
        "loop_breaks": meta.loop_breaks,
        "search_us": meta.completion_search_us,
        "mask_us": meta.mask_time_us,
        "shortest": shortest,
        "incomplete_though_it_fitted": cut and shortest is not None and shortest <= max_tokens,
        "errors": response.validation.errors,
        "text": response.text[:300],
    }


async def _shortest(client, constraints, mode: str) -> int | None:
    """Tokens of the shortest output found for the compiled grammar (None: not found)."""
    from ananke.engines.llamacpp import LlamaCppEngine

    compiled = await client.compile_constraints(constraints, schema_mode=mode)
    engine: LlamaCppEngine = client._backend.engine
    found = await asyncio.to_thread(engine.runner().shortest_output, compiled["schema"])
    return None if found is None else found[0]


async def _email(client, seeds: int, advance) -> list[dict]:
    from ananke import PyConstraintIR, PyGenerationRequest

    constraint = [PyConstraintIR("email", regex_patterns=[EMAIL])]
    shortest = await _shortest(client, constraint, "strict")
    rows = []
    for seed in range(seeds):
        request = PyGenerationRequest(EMAIL_PROMPT, constraint, max_tokens=40, temperature=0.7, seed=seed)
        rows.append({"seed": seed, **_row(await client.generate(request), 40, shortest)})
        advance()
    return rows


async def _medium(client, tasks, budgets: tuple[int, ...], advance) -> list[dict]:
    from ananke import ConstraintCompileError, PyConstraintIR, PyGenerationRequest

    rows = []
    for task in tasks:
        constraint = [PyConstraintIR("s", json_schema=task.schema)]
        mode = "strict"
        try:
            await client.compile_constraints(constraint)
        except ConstraintCompileError as exc:
            mode = "relaxed" if "schema_mode='relaxed'" in str(exc) else "refused"
            refusal = exc.reason
        if mode == "refused":
            rows += [{"task": task.name, "max_tokens": b, "mode": mode, "satisfied": False,
                      "finish_reason": "refused", "errors": {"s": refusal}} for b in budgets]  # fmt: skip
            advance(len(budgets))
            continue
        shortest = await _shortest(client, constraint, mode)
        for budget in budgets:
            request = PyGenerationRequest(PROMPT, constraint, budget, 0.0, schema_mode=mode, max_attempts=1)
            row = _row(await client.generate(request), budget, shortest)
            rows.append({"task": task.name, "max_tokens": budget, "mode": mode, **row})
            advance()
    return rows


async def _qa(client, questions, advance) -> list[dict]:
    from ananke import PyConstraintIR, PyGenerationRequest

    rows = []
    for question, answer in questions:
        plain = await client.generate(PyGenerationRequest(question, [], max_tokens=32, temperature=0.0))
        shaped = await client.generate(
            PyGenerationRequest(
                question,
                [PyConstraintIR("answer", json_schema=ANSWER_SCHEMA)],
                max_tokens=32,
                temperature=0.0,
            )
        )
        try:
            shaped_answer = json.loads(shaped.text)["answer"]
        except (ValueError, KeyError, TypeError):
            shaped_answer = ""
        rows.append({
            "question": question, "expected": answer,
            "plain": plain.text[:200], "plain_correct": answer in plain.text.lower(),
            "constrained": shaped.text[:200], "constrained_valid": shaped.validation.all_satisfied,
            "constrained_correct": answer in str(shaped_answer).lower(),
            "constrained_budget_closed": shaped.metadata.budget_closed,
        })  # fmt: skip
        advance()
    return rows


def prompt_tokens(engine, tasks) -> dict:
    """Prompt tokens per task with the outline (what is sent) and with the raw schema text (what
    was sent before): the same prompt with the one schema sentence swapped."""
    from ananke.engines.llamacpp import render_prompt
    from ananke.prompting import MAX_SCHEMA_CHARS_IN_PROMPT, json_shape

    def sentence_tokens(text: str) -> int:
        return len(engine.model.tokenize(text, parse_special=False))

    outline, raw = [], []
    for task in tasks:
        sent = len(render_prompt(engine, task.request(64)))
        shape = json_shape(task.schema)[:MAX_SCHEMA_CHARS_IN_PROMPT]
        schema = task.schema[:MAX_SCHEMA_CHARS_IN_PROMPT]
        outline.append(sent)
        raw.append(
            sent
            - sentence_tokens(f"The output is JSON of this shape (TypeScript, ? = optional): {shape}")
            + sentence_tokens(f"The output must be JSON matching this JSON Schema: {schema}")
        )
    return {
        "tasks": len(tasks),
        "outline_p50": pct(outline, 50),
        "raw_schema_p50": pct(raw, 50),
        "outline_total": sum(outline),
        "raw_schema_total": sum(raw),
        "ratio_total": round(sum(outline) / max(1, sum(raw)), 3),
    }


def _summarise(rows: list[dict]) -> dict:
    ran = [r for r in rows if r["finish_reason"] != "refused"]
    return {
        "outputs": len(rows),
        "satisfied": sum(r["satisfied"] for r in rows),
        "refused_at_compile": len(rows) - len(ran),
        "length_cut": sum(r["finish_reason"] == "length" for r in ran),
        "incomplete_though_it_fitted": sum(r["incomplete_though_it_fitted"] for r in ran),
        "budget_closed": sum(r["budget_closed"] for r in ran),
        "loop_breaks": sum(r["loop_breaks"] for r in ran),
        "search_us_per_token": round(
            sum(r["search_us"] for r in ran) / max(1, sum(r["tokens"] for r in ran)), 1
        ),
        "mask_us_per_token": round(sum(r["mask_us"] for r in ran) / max(1, sum(r["tokens"] for r in ran)), 1),
        "prompt_tokens_p50": pct([r["prompt_tokens"] for r in ran], 50),
    }


def run(ctx: BenchContext) -> dict:
    from ananke import Ananke
    from ananke.bench.tasks import SchemaTask, maskbench_files

    seeds, n_medium, budgets, questions = (3, 4, (64, 128), QA[:4]) if ctx.quick else (20, 50, (128, 256), QA)
    files = [f for f in maskbench_files(ctx.need("maskbench")) if f.stem.startswith("Github_medium")]
    tasks = [
        SchemaTask(f.stem, json.dumps(json.loads(f.read_text())["schema"]))
        for f in files[:: max(1, len(files) // n_medium)][:n_medium]
    ]
    client = Ananke("local", timeout_secs=600)

    async def all_workloads():
        total = seeds + len(tasks) * len(budgets) + len(questions)
        with progress("finish", total) as advance:
            return (
                await _email(client, seeds, advance),
                await _medium(client, tasks, budgets, advance),
                await _qa(client, questions, advance),
            )

    email, medium, qa = asyncio.run(all_workloads())
    from ananke.bench.peers import FULL_SIZE, QUICK_SIZE
    from ananke.bench.tasks import maskbench_tasks

    engine = client._backend.engine.runner()
    peer_tasks = maskbench_tasks(ctx.need("maskbench"), (QUICK_SIZE if ctx.quick else FULL_SIZE)[0])
    summary = {
        "email": _summarise(email),
        **{f"medium_{b}": _summarise([r for r in medium if r["max_tokens"] == b]) for b in budgets},
        "qa": {
            "questions": len(qa),
            "plain_correct": sum(r["plain_correct"] for r in qa),
            "constrained_correct": sum(r["constrained_correct"] for r in qa),
            "constrained_valid": sum(r["constrained_valid"] for r in qa),
            "constrained_budget_closed": sum(r["constrained_budget_closed"] for r in qa),
        },
        "cut_though_a_completion_fitted": sum(
            r["incomplete_though_it_fitted"] for r in email + medium if r["finish_reason"] != "refused"
        ),
        "prompt_tokens": {"peers": prompt_tokens(engine, peer_tasks), "medium": prompt_tokens(engine, tasks)},
    }
    settings = {"email_seeds": seeds, "medium_schemas": len(tasks), "budgets": list(budgets),
                "relaxed": sorted({r["task"] for r in medium if r["mode"] == "relaxed"}),
                "refused": sorted({r["task"] for r in medium if r["mode"] == "refused"})}  # fmt: skip
    report = write_report(ctx, "finish", settings, summary, {"email": email, "medium": medium, "qa": qa})
    write_markdown(ctx, report)
    return summary


def write_markdown(ctx: BenchContext, report: dict) -> None:
    s, settings = report["summary"], report["settings"]
    email = s["email"]
    rows = [["e-mail regex, temperature 0.7, max_tokens 40", f"{email['satisfied']}/{email['outputs']}",
             ">= 95 %", target_note(email["satisfied"] / max(1, email["outputs"]), 0.95)]]  # fmt: skip
    for budget, target in zip(settings["budgets"], (0.8, 0.9), strict=False):
        m = s[f"medium_{budget}"]
        share = m["satisfied"] / max(1, m["outputs"])
        rows.append([f"Github_medium, temperature 0, max_tokens {budget}", f"{m['satisfied']}/{m['outputs']}",
                     f">= {target:.0%}", target_note(share, target)])  # fmt: skip
    fitted = s["cut_though_a_completion_fitted"]
    rows.append(["outputs cut although a completion fitted", fitted, "0", "met" if fitted == 0 else "missed"])
    detail = [
        [name, m["outputs"], m["satisfied"], m["refused_at_compile"], m["length_cut"], m["budget_closed"],
         m["loop_breaks"], m["search_us_per_token"], m["mask_us_per_token"], m["prompt_tokens_p50"]]
        for name, m in s.items() if name.startswith(("email", "medium"))
    ]  # fmt: skip
    qa = s["qa"]
    prompts = [[name, p["tasks"], p["raw_schema_p50"], p["outline_p50"], p["ratio_total"]]
               for name, p in s["prompt_tokens"].items()]  # fmt: skip
    text = header(ctx, report, "constrained outputs that finish complete and valid")
    text += f"""
Through `Ananke("local")` (the embedded SmolLM2-135M). Github_medium: {settings["medium_schemas"]}
schemas spread evenly over the visible files; relaxed mode for {len(settings["relaxed"])} that strict mode
refuses with the relaxed hint ({", ".join(settings["relaxed"]) or "none"}), refused by both:
{len(settings["refused"])}. Satisfied = the independent validator's verdict on the schema as written.

{table(["measure", "measured", "target", ""], rows)}
{table(["workload", "outputs", "satisfied", "refused", "cut at the cap", "closed to fit", "loop breaks",
        "search µs/token", "mask µs/token", "prompt tokens p50"], detail)}
Quality with and without the constraint ({qa["questions"]} short questions, same prompts, max_tokens 32,
temperature 0): correct answers plain {qa["plain_correct"]}/{qa["questions"]}, with a JSON answer schema
{qa["constrained_correct"]}/{qa["questions"]} (valid JSON: {qa["constrained_valid"]}/{qa["questions"]};
closed by the budget: {qa["constrained_budget_closed"]}; the answers that were not closed by the budget
show what answering in JSON, not the closing, costs).

Prompt tokens with the schema shown as a TypeScript-like outline against the raw JSON Schema text
(the same prompt with that one sentence swapped; schemas of the peers suite and of the medium workload):

{table(["schemas", "tasks", "raw schema p50", "outline p50", "total outline ÷ raw"], prompts)}"""  # fmt: skip
    update_results_md(ctx, "finish", text)
