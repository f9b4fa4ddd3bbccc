"""tools: do tool calls through /v1/chat/completions come back with arguments that validate?

30 function schemas of maskbench's `Glaiveai2K` subset (spread evenly over its files; quick: 6)
declared as OpenAI tools to a real `ananke serve` subprocess (the embedded model), temperature 0:

* **named**: `tool_choice` names the function;
* **required**: the function and the two schemas after it are declared, `tool_choice="required"`,
  the prompt asks for the first.

Each answer counts as valid when it is a tool call whose name is a declared one and whose
`arguments` parse and validate (jsonschema, formats checked) against that function's parameters.
A schema strict mode refuses with the relaxed-mode hint is sent with `schema_mode: "relaxed"`, as
its error tells the user. Target: 100 % valid arguments.
"""

from __future__ import annotations

import json
import re

from ananke.bench.common import BenchContext, header, table, target_note, update_results_md, write_report

MAX_TOKENS = 256


def _tool(path) -> dict:
    data = json.loads(path.read_text())
    name = re.sub(r"_[0-9a-f]{8}$", "", path.stem.split("---", 1)[1])
    return {"type": "function", "function": {"name": name, "parameters": data["schema"]}}


def _valid(call: dict, schemas: dict) -> tuple[bool, str]:
    import jsonschema

    name = call["function"]["name"]
    if name not in schemas:
        return False, f"undeclared function {name!r}"
    try:
        arguments = json.loads(call["function"]["arguments"])
    except ValueError as exc:
        return False, f"arguments are not JSON: {exc}"
    cls = jsonschema.validators.validator_for(schemas[name])
    errors = [e.message for e in cls(schemas[name], format_checker=cls.FORMAT_CHECKER).iter_errors(arguments)]
    return not errors, "; ".join(errors[:2])


def _ask(url: str, tools: list[dict], choice) -> dict:
    import httpx

    target = tools[0]["function"]["name"]
    body = {
        "messages": [{"role": "user", "content": f"Call {target} with realistic arguments."}],
        "tools": tools, "tool_choice": choice, "max_tokens": MAX_TOKENS, "temperature": 0,
    }  # fmt: skip
    mode = "strict"
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    if response.status_code == 400 and "relaxed" in response.text:
        mode = "relaxed"
        response = httpx.post(f"{url}/v1/chat/completions", json={**body, "schema_mode": mode}, timeout=600)
    if response.status_code != 200:
        return {"mode": "refused", "valid": False, "finish_reason": "refused", "why": response.text[:300]}
    choice_ = response.json()["choices"][0]
    calls = choice_["message"].get("tool_calls") or []
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    checks = [_valid(c, schemas) for c in calls]
    return {
        "mode": mode,
        "finish_reason": choice_["finish_reason"],
        "calls": len(calls),
        "valid": bool(calls) and all(ok for ok, _ in checks),
        "why": "; ".join(why for _, why in checks if why) or ("" if calls else "no tool call"),
        "tokens": response.json()["usage"]["completion_tokens"],
        "text": (choice_["message"].get("content") or json.dumps(calls))[:300],
    }


def run(ctx: BenchContext) -> dict:
    from ananke.bench.serve import ananke_serve
    from ananke.bench.tasks import maskbench_files

    n = 6 if ctx.quick else 30
    files = [f for f in maskbench_files(ctx.need("maskbench")) if f.stem.startswith("Glaiveai2K")]
    picked = files[:: max(1, len(files) // n)][:n]
    tools = [_tool(f) for f in picked]
    rows = []
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    with ananke_serve(log_path=ctx.results_dir / "tools-server.log", ready_timeout=180) as url:
        for index, tool in enumerate(tools):
            name = tool["function"]["name"]
            named = {"type": "function", "function": {"name": name}}
            others = [tools[(index + k) % len(tools)] for k in (1, 2)]
            declared = [tool]
            for other in others:  # names must be unique in a request: a repeated one is left out
                if all(other["function"]["name"] != t["function"]["name"] for t in declared):
                    declared.append(other)
            rows.append({"schema": picked[index].stem, "choice": "named", **_ask(url, [tool], named)})
            rows.append(
                {"schema": picked[index].stem, "choice": "required", **_ask(url, declared, "required")}
            )
    summary = {
        choice: {
            "calls": len(sel := [r for r in rows if r["choice"] == choice]),
            "valid": sum(r["valid"] for r in sel),
            "relaxed": sum(r["mode"] == "relaxed" for r in sel),
            "refused": sum(r["mode"] == "refused" for r in sel),
            "length_cut": sum(r["finish_reason"] == "length" for r in sel),
        }
        for choice in ("named", "required")
    }
    report = write_report(
        ctx, "tools", {"schemas": len(tools), "max_tokens": MAX_TOKENS}, summary, {"rows": rows}
    )
    rows_md = [
        [f"tool_choice {c}", f"{s['valid']}/{s['calls']}", "100 %",
         target_note(s["valid"] / max(1, s["calls"]), 1.0), s["relaxed"], s["refused"], s["length_cut"]]
        for c, s in summary.items()
    ]  # fmt: skip
    text = header(ctx, report, "tool calls whose arguments validate")
    text += f"""
{len(tools)} `Glaiveai2K` function schemas of maskbench as OpenAI tools, through `ananke serve`'s
/v1/chat/completions (the embedded SmolLM2-135M), temperature 0, max_tokens {MAX_TOKENS}.

{table(["tool choice", "valid arguments", "target", "", "relaxed", "refused", "cut at the cap"], rows_md)}
"""
    update_results_md(ctx, "tools", text)
    return summary
