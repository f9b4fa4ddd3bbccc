"""Pydantic types in and out of the Python API: PyConstraintIR.from_model (models, TypedDict,
dataclasses through TypeAdapter) and PyGenerationResponse.parsed, with the real local engine."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pydantic
import pytest
from typing_extensions import TypedDict

from ananke import Ananke, InvalidRequestError, PyConstraintIR, PyGenerationRequest, tool_constraint


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=12)
    age: int = pydantic.Field(ge=0, le=120)


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass
class Colour:
    name: Literal["red", "green", "blue"]


def test_from_model_gives_the_types_schema():
    assert json.loads(PyConstraintIR.from_model(Person).json_schema) == Person.model_json_schema()
    assert PyConstraintIR.from_model(Person).name == "Person"
    assert json.loads(PyConstraintIR.from_model(Point, name="p").json_schema)["required"] == ["x", "y"]
    assert json.loads(PyConstraintIR.from_model(Colour).json_schema)["properties"]["name"]["enum"]
    with pytest.raises(InvalidRequestError, match="from_model"):
        PyConstraintIR.from_model(object())


@pytest.mark.model
@pytest.mark.parametrize("model", [Person, Point, Colour])
async def test_generated_output_parses_as_the_model(model):
    request = PyGenerationRequest(
        prompt="Give an example as JSON.", constraints_ir=[PyConstraintIR.from_model(model)], max_tokens=48
    )
    response = await Ananke("local", timeout_secs=120).generate(request)
    value = response.parsed(model)
    assert pydantic.TypeAdapter(model).validate_python(value) == value
    if model is Person:
        assert isinstance(value, Person)


@pytest.mark.model
async def test_tool_constraint_in_the_python_api():
    tool = {"name": "add", "parameters": pydantic.TypeAdapter(Point).json_schema()}
    request = PyGenerationRequest(prompt="Call add.", constraints_ir=[tool_constraint(tool)], max_tokens=40)
    response = await Ananke("local", timeout_secs=120).generate(request)
    call = json.loads(response.code)
    assert call["name"] == "add" and pydantic.TypeAdapter(Point).validate_python(call["arguments"])
