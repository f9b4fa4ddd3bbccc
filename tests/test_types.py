import dataclasses
import inspect

import pytest

from ananke import (
    InvalidRequestError,
    PyConstraintIR,
    PyGenerationContext,
    PyGenerationMetadata,
    PyGenerationRequest,
    PyGenerationResponse,
    PyProvenance,
    PyValidationResult,
)


def test_signatures_match_api_md():
    params = lambda cls: list(inspect.signature(cls).parameters)  # noqa: E731
    assert params(PyGenerationRequest)[:5] == [
        "prompt", "constraints_ir", "max_tokens", "temperature", "context",
    ]  # fmt: skip
    assert params(PyConstraintIR) == ["name", "json_schema", "grammar", "regex_patterns"]
    assert params(PyGenerationContext) == ["current_file", "language", "project_root"]
    request = PyGenerationRequest("p")
    assert (request.constraints_ir, request.max_tokens, request.temperature, request.context) == (
        [], 2048, 0.7, None,
    )  # fmt: skip
    ir = PyConstraintIR("n")
    assert (ir.json_schema, ir.grammar, ir.regex_patterns) == (None, None, [])


def test_mutable_defaults_are_not_shared():
    a, b = PyConstraintIR("a"), PyConstraintIR("b")
    a.regex_patterns.append("x")
    assert b.regex_patterns == []
    r1, r2 = PyGenerationRequest("p"), PyGenerationRequest("q")
    r1.constraints_ir.append(a)
    assert r2.constraints_ir == []


def test_caller_list_is_copied():
    patterns = ["a+"]
    ir = PyConstraintIR("n", regex_patterns=patterns)
    patterns.append("b")
    assert ir.regex_patterns == ["a+"]


def _response() -> PyGenerationResponse:
    return PyGenerationResponse(
        code="{}",
        text="{}",
        provenance=PyProvenance("m", 1, ["c"], "prompt"),
        validation=PyValidationResult(False, [], ["c"], {"c": "why"}),
        metadata=PyGenerationMetadata(3, 10, 3333, 1, finish_reason="length"),
    )


def test_results_are_read_only():
    response = _response()
    with pytest.raises(dataclasses.FrozenInstanceError):
        response.code = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        response.validation.all_satisfied = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "obj",
    [
        PyConstraintIR("n", json_schema="{}", grammar="start: /a/", regex_patterns=["a"]),
        PyGenerationContext("a.py", "python", "/src"),
        PyGenerationRequest(
            "p", [PyConstraintIR("n", regex_patterns=["x"])], 10, 0.0, PyGenerationContext(), seed=3
        ),
        _response(),
    ],
)
def test_round_trip_through_wire_dict(obj):
    data = obj.to_dict()
    assert type(obj).from_dict(data) == obj
    assert "PyGeneration" in repr(obj) or "PyConstraintIR" in repr(obj)


def test_request_wire_form_uses_constraints_key():
    data = PyGenerationRequest("p", [PyConstraintIR("n", regex_patterns=["x"])]).to_dict()
    assert data["constraints"] == [
        {"name": "n", "json_schema": None, "grammar": None, "regex_patterns": ["x"]}
    ]


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: PyGenerationRequest("p", max_tokens=0), "max_tokens"),
        (lambda: PyGenerationRequest("p", max_tokens=-5), "max_tokens"),
        (lambda: PyGenerationRequest("p", temperature=float("nan")), "temperature"),
        (lambda: PyGenerationRequest("p", temperature=-1), "temperature"),
        (lambda: PyGenerationRequest(None), "prompt"),  # type: ignore[arg-type]
        (lambda: PyGenerationRequest("p", constraints_ir=["x"]), "constraints_ir"),
        (lambda: PyGenerationRequest("p", [PyConstraintIR("a"), PyConstraintIR("a")]), "unique"),
        (lambda: PyConstraintIR(""), "name"),
        (lambda: PyConstraintIR("n", regex_patterns="abc"), "regex_patterns"),
        (lambda: PyConstraintIR.from_dict({"name": "n", "bogus": 1}), "bogus"),
    ],
)
def test_bad_values_raise_named_errors(build, fragment):
    with pytest.raises(InvalidRequestError, match=fragment) as info:
        build()
    assert isinstance(info.value, RuntimeError)
