"""OpenAI-compatible routes of the Ananke service: any OpenAI client can use it.

`POST /v1/completions`, `POST /v1/chat/completions` (JSON, or Server-Sent Events with
`stream: true`) and `GET /v1/models`. A request carries at most one structured-output field, in
any of the spellings servers use:

* vLLM >= 0.12: `structured_outputs: {json | regex | grammar | choice}`
* vLLM < 0.12: `guided_json`, `guided_regex`, `guided_grammar`, `guided_choice`
* OpenAI: `response_format: {type: json_schema, json_schema: {schema}}` or `{type: json_object}`
* SGLang: `json_schema`, `regex`, `ebnf`

It becomes one Ananke constraint and runs through the same compile cache, limits, queue, metrics
and engine as `/v1/generate`. Two fields at once, or a field of the wrong type, is a 400 naming
them — never one silently preferred. A chat with one user message sends that message as the
prompt; longer chats are sent as `role: content` turns. Either way, and for /v1/completions too,
the engine wraps the prompt in the model's chat template with its own system message, as for
/v1/generate (the models served are instruction-tuned).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ananke.constraints import tools as tooling
from ananke.errors import AnankeError
from ananke.types import SAMPLING_FIELDS
from ananke.wire import ErrorBody, ErrorDetail, GenerateBody, GenerateResult, WireConstraint

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for /v1/completions
DEFAULT_CHAT_TOKENS = 2048

# Structured-output spellings at the top level of a request body, and what each one means.
TOP_LEVEL_FIELDS = {
    "guided_json": "json", "guided_regex": "regex", "guided_grammar": "grammar",
    "guided_choice": "choice", "json_schema": "json", "regex": "regex", "ebnf": "grammar",
}  # fmt: skip


class StructuredOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_: dict | bool | str | None = Field(None, alias="json")
    regex: str | None = None
    grammar: str | None = None
    choice: list[str] | None = None


class _OpenAIBody(BaseModel):
    """Fields both routes share. Unknown fields are a 422, as everywhere in the service."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    # Sampling, applied after the constraint's mask (the ranges are checked with the request's)
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    top_k: int = 0  # vLLM's extras, 0 / 1 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    n: int = Field(1, ge=1)  # one choice per request: n > 1 is a 400 naming it
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict | None = None  # the last chunk always carries `usage`
    user: str | None = None
    # accepted and ignored (they do not change the output): see docs/clients.md
    metadata: dict | None = None
    store: bool | None = None
    service_tier: str | None = None
    logprobs: bool | None = None  # only false/absent: true is a 400 naming it
    top_logprobs: int | None = None
    structured_outputs: StructuredOutputs | None = None
    response_format: dict | None = None
    guided_json: dict | bool | str | None = None
    guided_regex: str | None = None
    guided_grammar: str | None = None
    guided_choice: list[str] | None = None
    json_schema: dict | bool | str | None = None
    regex: str | None = None
    ebnf: str | None = None
    schema_mode: Literal["strict", "relaxed"] | None = None  # Ananke's own; None: the server's
    closed_objects: bool | None = None  # Ananke's own; None: the server's (closed)


class CompletionBody(_OpenAIBody):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None  # a string, or OpenAI content parts ({type: text, text})
    name: str | None = None
    tool_calls: list[dict] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool result's call
    refusal: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if isinstance(p, dict))
        return self.content or ""


class ChatBody(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None  # none | auto | required | {type: function, function: {name}}
    parallel_tool_calls: bool | None = None  # true: the model may write several calls (an array)
    functions: list[dict] | None = None  # the legacy spellings of tools / tool_choice
    function_call: str | dict | None = None


class OpenAIRequestError(AnankeError):
    """A 400 about the request's fields, in the OpenAI error shape (`param` names the field)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


@dataclass(frozen=True)
class Pipeline:
    """The service's own steps (server/app.py), so these routes run exactly what /v1/generate runs."""

    check_limits: Callable[[GenerateBody], None]
    ensure_capacity: Callable[[], None]
    compiled_for: Callable[[list, str | None, bool | None], Awaitable[tuple[Any, bool]]]
    events: Callable[..., AsyncIterator[str | GenerateResult]]
    until_disconnect: Callable[[Request, Awaitable[Any]], Awaitable[Any]]
    request_timeout_s: float
    max_tokens: int


def constraint_of(body: _OpenAIBody) -> WireConstraint | None:
    """The one Ananke constraint a body asks for, or None; OpenAIRequestError when it is ambiguous."""
    found: list[tuple[str, str, Any]] = []  # (field as written, kind, value)
    for name, kind in TOP_LEVEL_FIELDS.items():
        value = getattr(body, name)
        if value is not None:
            found.append((name, kind, value))
    if body.structured_outputs is not None:
        so = body.structured_outputs
        parts = {"json": so.json_, "regex": so.regex, "grammar": so.grammar, "choice": so.choice}
        for kind, value in parts.items():
            if value is not None:
                found.append((f"structured_outputs.{kind}", kind, value))
    if body.response_format is not None:
        found.extend(_response_format(body.response_format))
    if len(found) > 1:
        names = ", ".join(name for name, _, _ in found)
        raise OpenAIRequestError(
            f"conflicting structured-output fields: {names}; give exactly one", param=found[0][0]
        )
    if not found:
        return None
    name, kind, value = found[0]
    if kind == "json":
        if isinstance(value, str):  # vLLM accepts the schema as a JSON string too
            try:
                json.loads(value)
            except ValueError as exc:
                raise OpenAIRequestError(f"{name} is not valid JSON: {exc}", param=name) from None
            return WireConstraint(name=name, json_schema=value)
        return WireConstraint(name=name, json_schema=json.dumps(value))
    if kind == "regex":
        return WireConstraint(name=name, regex_patterns=[value])
    if kind == "grammar":
        return WireConstraint(name=name, grammar=value)
    if not value or not all(value):
        raise OpenAIRequestError(f"{name} must be a non-empty list of non-empty strings", param=name)
    # choice: a grammar of string literals (Lark literals take JSON string escapes)
    return WireConstraint(name=name, grammar="start: " + " | ".join(json.dumps(v) for v in value))


def _response_format(fmt: dict) -> list[tuple[str, str, Any]]:
    kind = fmt.get("type")
    if kind == "text":
        return []
    if kind == "json_object":
        return [("response_format", "json", {"type": "object"})]
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise OpenAIRequestError(
                "response_format.json_schema must be an object with a 'schema' field",
                param="response_format.json_schema",
            )
        return [("response_format.json_schema", "json", spec["schema"])]
    raise OpenAIRequestError(
        f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
        param="response_format.type",
    )


def chat_prompt(messages: list[ChatMessage], preamble: str = "") -> str:
    if len(messages) == 1 and messages[0].role == "user" and not preamble:
        return messages[0].text()
    turns = [
        tooling.render_message(m) if m.role in ("tool", "assistant") else f"{m.role}: {m.text()}"
        for m in messages
    ]
    return "\n\n".join(([preamble] if preamble else []) + turns)


@dataclass(frozen=True)
class ToolPlan:
    """What a chat body's tools ask for: the constraint, the prompt preamble, and whether the
    output is (required/named) or may be (auto) a call."""

    constraint: WireConstraint | None
    preamble: str
    mode: str  # "none" | "auto" | "call"


def tool_plan(body: ChatBody) -> ToolPlan:
    tools = (
        body.tools
        if body.tools is not None
        else [{"type": "function", "function": f} for f in body.functions or []]
    )
    choice = body.tool_choice if body.tool_choice is not None else body.function_call
    if isinstance(choice, dict) and "name" in choice and "function" not in choice:  # legacy function_call
        choice = {"type": "function", "function": {"name": choice["name"]}}
    if not tools:
        if choice not in (None, "none"):
            raise OpenAIRequestError("tool_choice needs tools", param="tool_choice")
        return ToolPlan(None, "", "none")
    try:
        functions = [tooling.function_of(t) for t in tools]
    except ValueError as exc:
        raise OpenAIRequestError(str(exc), param="tools") from None
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise OpenAIRequestError("tool names must be unique", param="tools")
    choice = "auto" if choice is None else choice
    if choice == "none":
        return ToolPlan(None, "", "none")
    parallel = bool(body.parallel_tool_calls)
    name = None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if not isinstance(name, str):
            raise OpenAIRequestError(
                "tool_choice must be 'none', 'auto', 'required' or "
                "{'type': 'function', 'function': {'name': ...}}",
                param="tool_choice",
            )
        if name not in names:
            raise OpenAIRequestError(
                f"tool_choice names {name!r}, not among the declared tools", "tool_choice"
            )
        functions = [f for f in functions if f["name"] == name]
    elif choice not in ("auto", "required"):
        raise OpenAIRequestError(
            f"tool_choice must be 'none', 'auto', 'required' or a named function, got {choice!r}",
            "tool_choice",
        )
    preamble = tooling.tools_prompt(functions, parallel)
    if choice == "auto":
        grammar = tooling.auto_grammar(functions, parallel)
        return ToolPlan(WireConstraint(name="tool_choice.auto", grammar=grammar), preamble, "auto")
    schema = tooling.call_schema(functions, parallel)
    return ToolPlan(
        WireConstraint(name=f"tool_choice.{name or choice}", json_schema=json.dumps(schema)), preamble, "call"
    )


def _check_unsupported(body: _OpenAIBody) -> None:
    if body.stop:  # the engine stops at the grammar's end or the model's end token only
        raise OpenAIRequestError("stop sequences are not supported by this server", param="stop")
    if body.n > 1:
        raise OpenAIRequestError("n > 1 is not supported by this server (one choice per request)", param="n")
    if body.logprobs or body.top_logprobs:
        raise OpenAIRequestError(
            "logprobs are not supported by this server (the engine does not report them)", param="logprobs"
        )


def add_openai_routes(app: FastAPI, pipeline: Pipeline) -> None:
    engine = app.state.engine

    @app.exception_handler(OpenAIRequestError)
    async def openai_error(request: Request, exc: OpenAIRequestError):
        detail = ErrorDetail(
            type="invalid_request_error",
            message=str(exc),
            param=exc.param,
            code=exc.status,
            request_id=request.state.request_id,
        )
        return JSONResponse(ErrorBody(error=detail).model_dump(exclude_none=True), status_code=exc.status)

    def served_model(body: _OpenAIBody) -> str:
        name = engine.model_name
        if body.model not in (None, "", name):
            raise OpenAIRequestError(
                f"model {body.model!r} is not served here; this server serves {name!r} (see GET /v1/models)",
                param="model",
                status=404,
            )
        return name

    async def run(
        body: _OpenAIBody,
        prompt: str,
        max_tokens: int | None,
        request: Request,
        chat: bool,
        plan: ToolPlan | None = None,
    ):
        model = served_model(body)
        _check_unsupported(body)
        constraint = constraint_of(body)
        tool_mode = "none"
        if plan is not None and plan.constraint is not None:
            if constraint is not None:
                raise OpenAIRequestError(
                    f"tool_choice {plan.mode!r} and {constraint.name} both constrain the output; give one "
                    "(or tool_choice 'none')",
                    param="tool_choice",
                )
            constraint, tool_mode = plan.constraint, plan.mode
        default_tokens = DEFAULT_CHAT_TOKENS if chat else DEFAULT_COMPLETION_TOKENS
        generate_body = GenerateBody(
            prompt=prompt,
            constraints=[constraint] if constraint else [],
            max_tokens=max_tokens or min(default_tokens, pipeline.max_tokens),
            temperature=body.temperature,
            seed=body.seed,
            stream=body.stream,
            schema_mode=body.schema_mode,
            closed_objects=body.closed_objects,
            **{name: getattr(body, name) for name in SAMPLING_FIELDS},
        )
        deadline = asyncio.get_running_loop().time() + pipeline.request_timeout_s
        pipeline.check_limits(generate_body)
        generate_body.to_request()
        pipeline.ensure_capacity()
        compiled, hit = await pipeline.compiled_for(
            generate_body.constraints, generate_body.schema_mode, generate_body.closed_objects
        )
        request_id = request.state.request_id
        work = pipeline.events(generate_body, compiled, hit, deadline, request_id)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{request_id}"
        if body.stream:
            return StreamingResponse(
                _sse(work, ident, model, chat, tool_mode), media_type="text/event-stream"
            )

        async def collect() -> GenerateResult:
            async for item in work:
                if isinstance(item, GenerateResult):
                    return item
            raise AnankeError("the engine ended without a result")

        result = await pipeline.until_disconnect(request, collect())
        if result is None:  # the client left; nobody reads an answer
            return Response(status_code=499)
        return JSONResponse(_completion(result, ident, model, chat, tool_mode))

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": engine.model_name, "object": "model", "created": 0, "owned_by": "ananke"}],
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionBody, request: Request):
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise OpenAIRequestError("prompt must be one string (batches are not supported)", "prompt")
            prompt = prompt[0]
        return await run(body, prompt, body.max_tokens, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatBody, request: Request):
        if body.max_tokens and body.max_completion_tokens:
            raise OpenAIRequestError("give max_tokens or max_completion_tokens, not both", "max_tokens")
        max_tokens = body.max_completion_tokens or body.max_tokens
        plan = tool_plan(body)
        prompt = chat_prompt(body.messages, plan.preamble)
        return await run(body, prompt, max_tokens, request, chat=True, plan=plan)


def _usage(result: GenerateResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.tokens_generated,
        "total_tokens": result.prompt_tokens + result.tokens_generated,
    }


def _ananke(result: GenerateResult) -> dict[str, Any]:
    """Ananke's own numbers, beside the OpenAI fields (clients ignore fields they do not know)."""
    return {
        "enforced": result.enforced,
        "validated_only": result.validated_only,
        "relaxed": result.relaxed,
        "closed": result.closed,
        "budget_closed": result.budget_closed,
        "closing_tokens": result.closing_tokens,
        "budget_steered": result.budget_steered,
        "loop_breaks": result.loop_breaks,
        "validation": result.validation,  # the service's own verdict on the output
        "cache_hit": result.cache_hit,
        "generation_time_ms": result.generation_time_ms,
        "constraint_compile_time_ms": result.constraint_compile_time_ms,
        "request_id": result.request_id,
    }


def _tool_calls(result: GenerateResult, tool_mode: str) -> list[dict] | None:
    """The OpenAI tool calls of a result decoded under a tool constraint (None: a text answer)."""
    if tool_mode == "none" or result.finish_reason != "stop":
        return None
    return tooling.parse_calls(result.text)


def _completion(result: GenerateResult, ident: str, model: str, chat: bool, tool_mode: str = "none") -> dict:
    if chat:
        calls = _tool_calls(result, tool_mode)
        message = {"role": "assistant", "content": result.text}
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": calls}
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": "tool_calls" if calls else result.finish_reason,
            "logprobs": None,
        }
    else:
        choice = {"index": 0, "text": result.text, "finish_reason": result.finish_reason, "logprobs": None}
    return {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage(result),
        "ananke": _ananke(result),
    }


async def _sse(
    work: AsyncIterator[str | GenerateResult], ident: str, model: str, chat: bool, tool_mode: str = "none"
) -> AsyncIterator[str]:
    """OpenAI chunks (`data: {…}`), a last chunk with finish_reason and usage, then `data: [DONE]`.

    Under a tool constraint the text is held back until the output is complete: a call is sent as
    `delta.tool_calls` (one delta per call, whole arguments), a text answer (auto) as content."""
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None, extra: dict | None = None) -> str:
        if chat:
            delta = {} if text is None else {"content": text}
            if text == "" and finish is None:
                delta = {"role": "assistant", "content": ""}
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        body = {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]}
        return f"data: {json.dumps({**body, **(extra or {})})}\n\n"

    try:
        if chat:
            yield chunk("", None)
        held: list[str] = []
        async for item in work:
            if isinstance(item, GenerateResult):
                finish = item.finish_reason
                if tool_mode != "none":
                    calls = _tool_calls(item, tool_mode)
                    if calls:
                        finish = "tool_calls"
                        for index, call in enumerate(calls):
                            delta = {"tool_calls": [{"index": index, **call}]}
                            choice = {"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}
                            body = {"id": ident, "object": kind, "created": created, "model": model}
                            yield f"data: {json.dumps({**body, 'choices': [choice]})}\n\n"
                    elif held:
                        yield chunk("".join(held), None)
                yield chunk(None, finish, {"usage": _usage(item), "ananke": _ananke(item)})
            elif tool_mode != "none":
                held.append(item)
            else:
                yield chunk(item, None)
    except AnankeError as exc:  # the headers are sent: report in the stream, as OpenAI servers do
        error = {"error": {"type": "server_error", "message": str(exc)}}
        yield f"data: {json.dumps(error)}\n\n"
    yield "data: [DONE]\n\n"
