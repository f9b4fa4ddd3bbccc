"""The OpenAI-compatible side, both directions, over real uvicorn on 127.0.0.1 with the real model.

* The service's /v1/completions, /v1/chat/completions, /v1/models: every structured-output
  spelling is accepted and enforced; conflicts and bad fields are specific 4xx errors.
* The client's OpenAI backend (`openai+http://…/v1?server=…`) against those routes, for each
  server flavour (vLLM, vLLM < 0.12, SGLang): JSON schema, regex and grammar give valid outputs.
* The official `openai` Python client gets schema-valid JSON through `response_format`.
"""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import pytest

from ananke import Ananke, AuthenticationError, ConfigurationError, PyConstraintIR, PyGenerationRequest
from ananke.constraints import compile_constraints
from ananke.constraints.servers import request_fields, server_constraint
from ananke.engines.llamacpp import LlamaCppEngine
from ananke.server.app import ServerSettings, create_app
from tests.servers import uvicorn_thread
from tests.test_compiler import SEED_GRAMMAR, SEED_SCHEMA

KEY = "openai-test-key"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
GBNF = 'root ::= "yes" | "no"'


# ---------------------------------------------------------------------- the mapping (no server)


def _fields(constraints: list[PyConstraintIR], flavour: str) -> dict:
    return request_fields(server_constraint(constraints, compile_constraints(constraints)), flavour)


def test_json_schema_fields_per_flavour():
    c = [PyConstraintIR("p", json_schema=json.dumps(PERSON))]
    compact = {**PERSON, "x-guidance": {"whitespace_flexible": False}}  # as the local engine decodes
    assert _fields(c, "vllm") == {"structured_outputs": {"json": compact}}
    assert _fields(c, "vllm-legacy") == {"guided_json": compact}
    sglang = _fields(c, "sglang")["response_format"]
    assert sglang["type"] == "json_schema" and sglang["json_schema"]["schema"] == PERSON


def test_the_server_gets_the_schema_the_compiler_enforces_after_relaxing():
    c = [
        PyConstraintIR(
            "u", json_schema='{"type": "array", "items": {"type": "integer"}, "uniqueItems": true}'
        )
    ]
    compiled = compile_constraints(c, None, "relaxed")
    assert compiled.relaxed == ("u: /uniqueItems: not enforced",)
    sent = request_fields(server_constraint(c, compiled), "sglang")["response_format"]["json_schema"][
        "schema"
    ]
    assert sent == {"type": "array", "items": {"type": "integer"}}  # validated afterwards, not sent


def test_regex_fields_drop_anchors_and_grammars_become_lark():
    c = [PyConstraintIR("email", regex_patterns=[r"^[a-z]+@[a-z]+\.com$"])]
    assert _fields(c, "vllm") == {"structured_outputs": {"regex": r"[a-z]+@[a-z]+\.com"}}
    assert _fields(c, "sglang") == {"regex": r"[a-z]+@[a-z]+\.com"}
    # the seed's `root:` grammar gets llguidance's `start:`; GBNF goes to SGLang as written
    lark = _fields([PyConstraintIR("g", grammar=SEED_GRAMMAR)], "vllm")["structured_outputs"]["grammar"]
    assert lark.startswith("start: root\n")
    assert _fields([PyConstraintIR("g", grammar=GBNF)], "sglang") == {"ebnf": GBNF}


def test_several_regexes_are_sent_as_their_intersection_never_dropped():
    c = [PyConstraintIR("a", regex_patterns=["[a-z]{3,8}"]), PyConstraintIR("b", regex_patterns=["x.*"])]
    grammar = _fields(c, "vllm-legacy")["guided_grammar"]
    assert "&" in grammar and "x.*" in grammar and "[a-z]{3,8}" in grammar


def test_only_what_the_compiler_enforces_is_sent_the_rest_is_validated():
    c = [PyConstraintIR("j", json_schema=SEED_SCHEMA, regex_patterns=[".*status.*"])]
    compiled = compile_constraints(c)
    assert compiled.validated_only == ("j:regex[0]",)
    assert list(request_fields(server_constraint(c, compiled), "vllm")["structured_outputs"]) == ["json"]
    assert request_fields(server_constraint([], compile_constraints([])), "sglang") == {}


def test_endpoint_flavour_is_checked_at_construction():
    client = Ananke("openai+http://127.0.0.1:9/v1?server=sglang")
    assert client._backend.flavour == "sglang"
    with pytest.raises(ConfigurationError, match="server='tgi'"):
        Ananke("openai+http://127.0.0.1:9/v1?server=tgi")


# ---------------------------------------------------------------------- the service's routes


@pytest.fixture(scope="module")
def service():
    engine = LlamaCppEngine()
    engine.runner()  # the model loads before the server starts
    with uvicorn_thread(create_app(engine, ServerSettings(api_key=KEY))) as url:
        yield url


def _post(url: str, path: str, body: dict, key: str | None = KEY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + path, json=body, headers=headers, timeout=120)


def _chat(prompt: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 48, **extra}


def _check_json(text: str) -> bool:
    jsonschema.validate(json.loads(text), PERSON)  # raises with the reason
    return True


def _is_object(text: str) -> bool:
    return isinstance(json.loads(text), dict)


def _date_like(text: str) -> bool:
    return re.fullmatch(r"[0-9]{2}-[0-9]{2}", text) is not None


RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}


@pytest.mark.model
def test_models_route_and_auth(service):
    assert httpx.get(service + "/v1/models").status_code == 401
    data = httpx.get(service + "/v1/models", headers={"authorization": f"Bearer {KEY}"}).json()
    assert data["object"] == "list" and data["data"][0]["id"].startswith("SmolLM2")
    assert _post(service, "/v1/chat/completions", _chat("hi"), key=None).status_code == 401


VARIANTS = [
    ({"structured_outputs": {"json": PERSON}}, _check_json),
    ({"guided_json": PERSON}, _check_json),
    ({"guided_json": json.dumps(PERSON)}, _check_json),
    ({"json_schema": PERSON}, _check_json),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}},
        _check_json,
    ),
    ({"response_format": {"type": "json_object"}}, lambda t: isinstance(json.loads(t), dict) or 1 / 0),
    (
        {"structured_outputs": {"regex": r"[0-9]{2}-[0-9]{2}"}},
        lambda t: re.fullmatch(r"[0-9]{2}-[0-9]{2}", t),
    ),
    ({"guided_regex": r"[0-9]{2}-[0-9]{2}"}, lambda t: re.fullmatch(r"[0-9]{2}-[0-9]{2}", t)),
    ({"regex": r"[0-9]{2}-[0-9]{2}"}, lambda t: re.fullmatch(r"[0-9]{2}-[0-9]{2}", t)),
    ({"structured_outputs": {"grammar": GBNF}}, lambda t: t in ("yes", "no")),
    ({"guided_grammar": 'start: "yes" | "no"'}, lambda t: t in ("yes", "no")),
    ({"ebnf": GBNF}, lambda t: t in ("yes", "no")),
    ({"structured_outputs": {"choice": ["red", "green", "blue"]}}, lambda t: t in ("red", "green", "blue")),
    ({"guided_choice": ["red", "green", "blue"]}, lambda t: t in ("red", "green", "blue")),
]


@pytest.mark.model
@pytest.mark.parametrize(
    "fields, check", VARIANTS, ids=[next(iter(f)) + str(i) for i, (f, _) in enumerate(VARIANTS)]
)
def test_every_structured_output_spelling_is_enforced(service, fields, check):
    response = _post(service, "/v1/chat/completions", _chat("Give a person (name, age) as JSON.", **fields))
    assert response.status_code == 200, response.text
    answer = response.json()
    text = answer["choices"][0]["message"]["content"]
    assert check(text), text
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] >= 1
    assert answer["ananke"]["enforced"]  # the service says what it enforced…
    assert answer["ananke"]["validation"]["all_satisfied"] is True  # …and checked it


@pytest.mark.model
def test_completions_route_json_and_stream(service):
    body = {"prompt": "A person as JSON:", "max_tokens": 48, "temperature": 0, "guided_json": PERSON}
    answer = _post(service, "/v1/completions", body).json()
    assert answer["object"] == "text_completion"
    _check_json(answer["choices"][0]["text"])
    streamed = _post(service, "/v1/completions", {**body, "stream": True})
    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    _check_json("".join(c["choices"][0]["text"] for c in chunks))
    assert (
        chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 0
    )


@pytest.mark.model
@pytest.mark.parametrize(
    "fields, status, words",
    [
        (
            {"guided_json": PERSON, "regex": "a+"},
            400,
            "conflicting structured-output fields: guided_json, regex",
        ),
        ({"structured_outputs": {"json": PERSON, "regex": "a+"}}, 400, "conflicting"),
        ({"response_format": {"type": "xml"}}, 400, "response_format.type"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, 400, "'schema'"),
        ({"guided_json": "{not json"}, 400, "guided_json is not valid JSON"),
        ({"guided_choice": []}, 400, "non-empty list"),
        ({"guided_regex": "(unclosed"}, 400, "regex_patterns[0]"),
        ({"stop": ["\n"]}, 400, "stop sequences"),
        ({"model": "gpt-4o"}, 404, "not served here"),
        ({"n": 2}, 400, "n > 1 is not supported"),
        ({"logprobs": True, "top_logprobs": 2}, 400, "logprobs are not supported"),
        ({"logit_bias": {"1": 2}}, 422, "unknown field 'logit_bias'"),
        ({"structured_outputs": {"xml": "x"}}, 422, "unknown field"),
    ],
)
def test_bad_fields_are_specific_errors(service, fields, status, words):
    response = _post(service, "/v1/chat/completions", _chat("hi", **fields))
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


# ---------------------------------------------------------------------- the client's OpenAI backend


CONSTRAINTS = {
    "json": PyConstraintIR("person", json_schema=json.dumps(PERSON)),
    "regex": PyConstraintIR("date", regex_patterns=[r"^2[0-9]{3}-[01][0-9]-[0-3][0-9]$"]),
    "grammar": PyConstraintIR("kv_grammar", grammar=SEED_GRAMMAR),
    "gbnf": PyConstraintIR("yes_no", grammar=GBNF),
}


@pytest.mark.model
@pytest.mark.parametrize("flavour", ["vllm", "vllm-legacy", "sglang"])
async def test_openai_backend_gives_valid_outputs(service, flavour):
    async with Ananke(f"openai+{service}/v1?server={flavour}", KEY, timeout_secs=120) as client:
        assert await client.health_check() is True
        for kind, constraint in CONSTRAINTS.items():
            request = PyGenerationRequest(f"Answer ({kind}).", [constraint], max_tokens=40, temperature=0.0)
            response = await client.generate(request)
            assert response.validation.all_satisfied, (kind, response.code, response.validation)
            assert response.provenance.model.startswith("SmolLM2")  # resolved from GET /v1/models
            assert response.metadata.tokens_generated >= 1


@pytest.mark.model
async def test_openai_backend_reports_server_errors_and_down_servers(service):
    async with Ananke(f"openai+{service}/v1", "wrong-key", timeout_secs=30, max_retries=0) as client:
        assert await client.health_check() is False  # GET /v1/models answers 401
        with pytest.raises(AuthenticationError):
            await client.generate(PyGenerationRequest("x", max_tokens=4))
    async with Ananke("openai+http://127.0.0.1:9/v1", timeout_secs=10, max_retries=0) as client:
        assert await client.health_check() is False
        with pytest.raises(RuntimeError, match="cannot reach"):
            await client.generate(PyGenerationRequest("x", max_tokens=4))


# ---------------------------------------------------------------------- the official openai client


@pytest.mark.model
def test_official_openai_client_gets_schema_valid_json(service):
    openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install openai)")
    client = openai.OpenAI(base_url=service + "/v1", api_key=KEY, max_retries=0)
    model = client.models.list().data[0].id
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Give a person (name, age) as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
        max_tokens=48,
        temperature=0,
    )
    _check_json(completion.choices[0].message.content)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Pick a colour."}],
        extra_body={"structured_outputs": {"choice": ["red", "green"]}},
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) in ("red", "green")
    with pytest.raises(openai.BadRequestError, match="conflicting"):
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_object"},
            extra_body={"guided_regex": "a+"},
        )


@pytest.mark.model
@pytest.mark.parametrize("flavour", ["vllm", "sglang"])
async def test_openai_backend_streams_deltas(service, flavour):
    async with Ananke(f"openai+{service}/v1?server={flavour}", KEY, timeout_secs=120) as client:
        request = PyGenerationRequest("A person.", [CONSTRAINTS["json"]], max_tokens=40, temperature=0.0)
        items = [item async for item in client.generate_stream(request)]
    deltas, response = items[:-1], items[-1]
    assert len(deltas) > 1 and "".join(deltas) == response.text  # token by token, all of it
    assert response.validation.all_satisfied, response.code
    assert response.metadata.tokens_generated > 1 and response.metadata.finish_reason == "stop"


@pytest.mark.model
def test_schema_mode_reaches_the_compiler(service):
    unique = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "maxItems": 3}
    refused = _post(service, "/v1/chat/completions", _chat("Three numbers.", guided_json=unique))
    assert refused.status_code == 400 and "uniqueItems" in refused.json()["error"]["message"]
    answer = _post(
        service, "/v1/chat/completions", _chat("Three numbers.", guided_json=unique, schema_mode="relaxed")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ananke"]["relaxed"] == ["guided_json: /uniqueItems: not enforced"]
    assert isinstance(json.loads(answer.json()["choices"][0]["message"]["content"]), list)
