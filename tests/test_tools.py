"""Tool calling on /v1/chat/completions through the official `openai` SDK, over real uvicorn with
the real model: required / named calls are enforced (the arguments validate against the declared
schema), auto lets the model answer text or a call, none leaves the output free; streamed calls
arrive as `delta.tool_calls`; tool results sent back are accepted; bad tool fields are 400s."""

from __future__ import annotations

import json

import jsonschema
import pytest

from ananke.constraints import compile_constraints, tools
from ananke.engines.llamacpp import LlamaCppEngine
from ananke.server.app import ServerSettings, create_app
from tests.servers import uvicorn_thread

openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install openai)")

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
}
TIME = {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 12}}, "required": ["zone"]}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "get_time", "description": "Time now", "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_tool_constraint_compiles_and_names_are_checked():
    constraint = tools.tool_constraint(TOOLS, name="get_time")
    compiled = compile_constraints([constraint])
    assert compiled.closed  # the call object and the arguments are decoded closed
    with pytest.raises(ValueError, match="not among"):
        tools.tool_constraint(TOOLS, name="nope")
    calls = tools.parse_calls('{"name": "get_time", "arguments": {"zone": "UTC"}}')
    assert calls[0]["function"] == {"name": "get_time", "arguments": '{"zone": "UTC"}'}
    assert tools.parse_calls("hello") is None


@pytest.fixture(scope="module")
def client():
    engine = LlamaCppEngine()
    engine.runner()
    with uvicorn_thread(create_app(engine, ServerSettings())) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def _valid(call) -> dict:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    assert call.id.startswith("call_") and call.type == "function"
    return arguments


@pytest.mark.model
@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
def test_required_and_named_calls_validate(client, choice):
    out = client.chat.completions.create(
        model="", messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=40, temperature=0
    )
    message = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls" and message.content is None
    assert len(message.tool_calls) == 1
    _valid(message.tool_calls[0])
    if isinstance(choice, dict):
        assert message.tool_calls[0].function.name == "get_weather"


@pytest.mark.model
def test_parallel_calls_and_tool_results_round_trip(client):
    out = client.chat.completions.create(
        model="", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=True,
        max_tokens=60, temperature=0,
    )  # fmt: skip
    calls = out.choices[0].message.tool_calls
    assert calls and all(_valid(c) is not None for c in calls)
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
        *({"role": "tool", "tool_call_id": c.id, "content": "18 degrees, sunny"} for c in calls),
    ]
    answer = client.chat.completions.create(
        model="", messages=history, tools=TOOLS, tool_choice="none", max_tokens=12, temperature=0
    )
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


@pytest.mark.model
def test_auto_gives_text_or_a_valid_call(client):
    out = client.chat.completions.create(
        model="", messages=ASK, tools=TOOLS, tool_choice="auto", max_tokens=40, temperature=0
    )
    choice = out.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        _valid(choice.message.tool_calls[0])
    else:
        assert choice.message.content and choice.message.content[0] not in "{["


@pytest.mark.model
def test_streamed_call_arrives_as_tool_call_deltas(client):
    stream = client.chat.completions.create(
        model="", messages=ASK, tools=TOOLS, max_tokens=40, temperature=0, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )  # fmt: skip
    deltas, finish = [], None
    for chunk in stream:
        deltas += chunk.choices[0].delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and deltas[0].function.name == "get_time"
    jsonschema.validate(json.loads("".join(d.function.arguments for d in deltas)), TIME)


@pytest.mark.model
@pytest.mark.parametrize(
    "extra, words",
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "both constrain"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n > 1"),
        ({"stop": ["x"]}, "stop"),
    ],
)
def test_bad_tool_fields_are_400s_naming_them(client, extra, words):
    with pytest.raises(openai.BadRequestError, match=words):
        client.chat.completions.create(model="", messages=ASK, tools=TOOLS, max_tokens=4, **extra)


@pytest.mark.model
def test_harmless_fields_are_accepted(client):
    out = client.chat.completions.create(
        model="", messages=ASK, max_tokens=4, user="u1", metadata={"k": "v"}, store=False,
        service_tier="auto", top_p=0.9, frequency_penalty=0.5, logprobs=False,
    )  # fmt: skip
    assert out.choices[0].message.content is not None
