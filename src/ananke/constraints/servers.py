"""Ananke constraints → the structured-output fields of vLLM and SGLang. Pure functions, no I/O.

An external server enforces exactly one constraint per request. We send it the constraint the
compiler chose to enforce (`compiled.enforced`), so every engine — llama.cpp, vLLM in-process, a
remote vLLM/SGLang — enforces the same thing, and what the compiler lists as `validated_only`
is checked by the validator afterwards, as everywhere else. Several regexes are enforced together
as one Lark grammar (`/a/ & /b/`), which needs llguidance on the server (vLLM's `guidance`
structured-output backend, SGLang's `--grammar-backend llguidance`).

Flavours (the fields each server reads):

* `vllm` (default, vLLM >= 0.12): `{"structured_outputs": {"json" | "regex" | "grammar": …}}`
* `vllm-legacy` (vLLM < 0.12): `guided_json` / `guided_regex` / `guided_grammar`
* `sglang`: `response_format` json_schema, `regex`, `ebnf`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from ananke.constraints.compiler import (
    CompiledConstraints,
    grammar_to_lark,
    normalise_regex,
    regex_lexeme,
)
from ananke.errors import ConfigurationError
from ananke.types import PyConstraintIR

FLAVOURS = ("vllm", "vllm-legacy", "sglang")


@dataclass(frozen=True)
class ServerConstraint:
    """The one constraint a server enforces: a JSON schema (dict), a regex or a grammar text."""

    kind: Literal["json", "regex", "grammar"]
    value: Any
    gbnf: str | None = None  # the user's GBNF text, for servers that read GBNF (SGLang's xgrammar)


def server_constraint(
    constraints: list[PyConstraintIR], compiled: CompiledConstraints
) -> ServerConstraint | None:
    """What the server must enforce: the compiler's `enforced` set, in the server's terms."""
    if compiled.grammar is None or not compiled.enforced:
        return None
    by_name = {c.name: c for c in constraints}
    name, _, part = compiled.enforced[0].rpartition(":")
    c = by_name[name]
    if part == "json_schema":
        return ServerConstraint("json", enforced_schema(compiled.grammar))
    if part == "grammar":
        gbnf = c.grammar if "::=" in (c.grammar or "") else None
        return ServerConstraint("grammar", grammar_to_lark(c.name, c.grammar or ""), gbnf=gbnf)
    # regexes only: one is sent as a regex, several as their intersection in one Lark grammar
    regexes = []
    for label in compiled.enforced:
        rname, _, rpart = label.rpartition(":")
        index = int(rpart[len("regex[") : -1])
        regexes.append((rname, index, by_name[rname].regex_patterns[index]))
    if len(regexes) == 1:
        return ServerConstraint("regex", normalise_regex(regexes[0][2]))
    lexemes = " & ".join(regex_lexeme(n, i, p) for n, i, p in regexes)
    return ServerConstraint("grammar", f"start: ANANKE_RE\nANANKE_RE: {lexemes}\n")


def enforced_schema(grammar: str) -> Any:
    """The JSON schema the compiler enforces, as embedded in its llguidance grammar: after
    relaxation (schema_mode='relaxed'), dropped unknown formats and llguidance's `x-guidance`
    options (compact JSON), so a server enforces exactly what the local engine would."""
    return json.loads(grammar)["grammars"][0]["json_schema"]


def request_fields(constraint: ServerConstraint | None, flavour: str) -> dict[str, Any]:
    """The request-body fields that carry `constraint` to a server of `flavour`."""
    if flavour not in FLAVOURS:
        raise ConfigurationError(f"unknown OpenAI server flavour {flavour!r}; known: {', '.join(FLAVOURS)}")
    if constraint is None:
        return {}
    kind, value = constraint.kind, constraint.value
    if flavour == "vllm":
        return {"structured_outputs": {kind: value}}
    if flavour == "vllm-legacy":
        return {f"guided_{kind}": value}
    if kind == "json":  # SGLang; its default backend (xgrammar) does not know llguidance's options
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "x-guidance"}
        schema = {"name": "ananke", "schema": value}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    if kind == "regex":
        return {"regex": value}
    return {"ebnf": constraint.gbnf or value}


def vllm_structured_outputs(
    constraints: list[PyConstraintIR], compiled: CompiledConstraints
) -> dict[str, Any] | None:
    """Keyword arguments of vLLM's `StructuredOutputsParams` for the in-process vLLM engine."""
    fields = request_fields(server_constraint(constraints, compiled), "vllm")
    return fields.get("structured_outputs")
