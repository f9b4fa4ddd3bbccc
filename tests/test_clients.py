"""The client libraries people already use, unchanged, against a real `ananke serve` subprocess
with the embedded model: the official `openai` SDK (create, parse, tools, streaming), instructor
(JSON_SCHEMA and TOOLS modes), LangChain's ChatOpenAI.with_structured_output (json_schema and
function_calling) and pydantic-ai with an OpenAI-compatible provider. Each typed result is checked
to validate as the model. The clients are the `clients` extra (installed by `make setup`)."""

from __future__ import annotations

import json

import pydantic
import pytest

from tests.servers import ananke_serve

openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install openai)")

KEY = "clients-key"
TOKENS = 60


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=12)
    age: int = pydantic.Field(ge=0, le=120)


class Weather(pydantic.BaseModel):
    """Get the weather in a city."""

    city: str = pydantic.Field(max_length=16)


ASK = "Invent a person: name and age."


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    log = tmp_path_factory.mktemp("clients") / "server.log"
    with ananke_serve("--api-key", KEY, log_path=log) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)


def _model(client) -> str:
    return client.models.list().data[0].id


@pytest.mark.model
def test_openai_parse_gives_the_model(client):
    completion = client.chat.completions.parse(
        model=_model(client), messages=[{"role": "user", "content": ASK}], response_format=Person,
        max_completion_tokens=TOKENS, temperature=0, top_p=0.9, frequency_penalty=0.5,
    )  # fmt: skip
    assert isinstance(completion.choices[0].message.parsed, Person)


@pytest.mark.model
def test_openai_tools_parse_and_stream(client):
    tool = openai.pydantic_function_tool(Weather)
    completion = client.chat.completions.parse(
        model=_model(client), messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[tool],
        tool_choice={"type": "function", "function": {"name": "Weather"}}, max_tokens=TOKENS, temperature=0,
    )  # fmt: skip
    call = completion.choices[0].message.tool_calls[0]
    assert isinstance(call.function.parsed_arguments, Weather)
    stream = client.chat.completions.create(
        model=_model(client), messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[tool],
        tool_choice="required", max_tokens=TOKENS, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    arguments = "".join(
        d.function.arguments
        for chunk in stream
        if chunk.choices
        for d in chunk.choices[0].delta.tool_calls or []
    )
    Weather.model_validate_json(arguments)


@pytest.mark.model
@pytest.mark.parametrize("mode", ["JSON_SCHEMA", "TOOLS"])
def test_instructor(client, mode):
    instructor = pytest.importorskip("instructor", reason="instructor is not installed (the clients extra)")
    patched = instructor.from_openai(client, mode=getattr(instructor.Mode, mode))
    person = patched.chat.completions.create(
        model=_model(client), messages=[{"role": "user", "content": ASK}], response_model=Person,
        max_tokens=TOKENS, temperature=0, max_retries=1,
    )  # fmt: skip
    assert isinstance(person, Person)


@pytest.mark.model
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(client, base_url, method):
    lc = pytest.importorskip(
        "langchain_openai", reason="langchain-openai is not installed (the clients extra)"
    )
    chat = lc.ChatOpenAI(
        model=_model(client), base_url=base_url, api_key=KEY, max_tokens=TOKENS, temperature=0, max_retries=0
    )
    person = chat.with_structured_output(Person, method=method).invoke(ASK)
    assert isinstance(person, Person)


@pytest.mark.model
def test_pydantic_ai_agent(client, base_url):
    pytest.importorskip("pydantic_ai", reason="pydantic-ai is not installed (the clients extra)")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(_model(client), provider=OpenAIProvider(base_url=base_url, api_key=KEY))
    agent = Agent(model, output_type=Person, model_settings={"max_tokens": TOKENS, "temperature": 0})
    result = agent.run_sync(ASK)
    assert isinstance(result.output, Person)
    json.loads(result.output.model_dump_json())
