"""Attempts: an output the validator rejects is regenerated, up to `max_attempts`, honestly counted."""

from __future__ import annotations

import pytest

from ananke import Ananke, InvalidRequestError, PyConstraintIR, PyGenerationRequest

pytestmark = pytest.mark.model

FLAG_SCHEMA = (
    '{"type": "object", "properties": {"green": {"type": "boolean"}}, "required": ["green"], '
    '"additionalProperties": false}'
)
FLAG = PyConstraintIR("flag", json_schema=FLAG_SCHEMA)
# Checked only afterwards (the schema is the one enforced); no JSON object can match it.
NEVER = PyConstraintIR("starts_with_bracket", regex_patterns=[r"\[.*"])
# Also checked only afterwards, and every output of the schema matches it.
ALWAYS = PyConstraintIR("has_green", regex_patterns=[r'\{"green":(true|false)\}'])


@pytest.fixture(scope="module")
def client() -> Ananke:
    return Ananke("local", timeout_secs=120)


def _request(constraints, **kw) -> PyGenerationRequest:
    return PyGenerationRequest("Is the light green? Answer as JSON.", constraints, 16, 0.0, **kw)


async def test_rejected_output_is_retried_up_to_max_attempts_and_reported_violated(client):
    response = await client.generate(_request([FLAG, NEVER], max_attempts=3))
    assert response.metadata.attempts == 3
    assert not response.validation.all_satisfied
    assert response.validation.violated == ["starts_with_bracket"]
    assert "does not fully match" in response.validation.errors["starts_with_bracket"]
    assert response.validation.satisfied == ["flag"]
    # the provenance keeps the caller's prompt, not the retry prompt with the reasons
    assert response.provenance.original_intent == "Is the light green? Answer as JSON."


async def test_accepted_output_is_not_retried(client):
    response = await client.generate(_request([FLAG, ALWAYS], max_attempts=3))
    assert response.validation.all_satisfied
    assert response.metadata.attempts == 1


async def test_without_max_attempts_a_strict_request_makes_one_attempt(client):
    response = await client.generate(_request([FLAG, NEVER]))
    assert response.metadata.attempts == 1
    assert response.validation.violated == ["starts_with_bracket"]


async def test_a_stream_makes_one_attempt(client):
    items = [item async for item in client.generate_stream(_request([FLAG, NEVER], max_attempts=3))]
    response = items[-1]
    assert "".join(items[:-1]) == response.text
    assert response.metadata.attempts == 1
    assert not response.validation.all_satisfied


@pytest.mark.parametrize("bad", [0, 11, -1, 2.0, True, "3"])
def test_max_attempts_is_checked(bad):
    with pytest.raises(InvalidRequestError, match="max_attempts"):
        _request([FLAG], max_attempts=bad)
