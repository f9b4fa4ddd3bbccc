"""Security properties of the service and the client."""

from __future__ import annotations

import inspect
import json

import httpx
import pytest

from ananke import PyConstraintIR, PyGenerationContext, PyGenerationRequest
from ananke.cli import serve
from ananke.prompting import build_messages
from tests.reliability.conftest import KEY

pytestmark = pytest.mark.model


def test_every_route_but_health_needs_the_key(served):
    url, _ = served
    spec = httpx.get(f"{url}/openapi.json", headers={"authorization": f"Bearer {KEY}"}).json()
    routes = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    routes += [("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/no/such/path")]
    assert ("POST", "/v1/generate") in routes and len(routes) >= 8
    for method, path in routes:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
            response = httpx.request(method, f"{url}{path}", headers=headers, json={})
            if path == "/health":
                assert response.status_code == 200
            else:
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["type"] == "authentication_error"


def test_logs_hold_no_key_prompt_or_schema(served):
    url, log = served
    marker = "zebra-marker-77"
    body = {
        "prompt": f"Say {marker}.",
        "max_tokens": 4,
        "constraints": [{"name": "j", "json_schema": json.dumps({"description": marker, "type": "integer"})}],
    }
    assert (
        httpx.post(f"{url}/v1/generate", json=body, headers={"authorization": f"Bearer {KEY}"}).status_code
        == 200
    )
    httpx.post(f"{url}/v1/generate", json=body, headers={"authorization": "Bearer not-the-key"})
    text = log.read_text()
    assert "POST /v1/generate" in text  # the access log is on (INFO), so this check can fail
    assert marker not in text and KEY not in text and "not-the-key" not in text


def test_default_bind_is_loopback():
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


def test_context_paths_are_never_read(tmp_path):
    secret = tmp_path / "app.py"
    secret.write_text("API_TOKEN = 'do-not-leak'\n")
    request = PyGenerationRequest(
        "Add a function.",
        [PyConstraintIR("r", regex_patterns=["x"])],
        context=PyGenerationContext(current_file=str(secret), project_root=str(tmp_path)),
    )
    prompt = json.dumps(build_messages(request))
    assert "do-not-leak" not in prompt and str(tmp_path) not in prompt.replace(str(secret), "")
