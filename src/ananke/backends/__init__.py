"""Backends: how generation happens behind `Ananke`. Chosen by the endpoint's form."""

from __future__ import annotations

from ananke.backends.base import Backend, GenerationResult
from ananke.config import PyModalConfig


def make_backend(config: PyModalConfig, schema_in_prompt: bool = True) -> Backend:
    if len(config.endpoints) > 1:  # several endpoints: spread requests, fail over between them
        from ananke.backends.failover import FailoverBackend

        return FailoverBackend(config, schema_in_prompt=schema_in_prompt)
    endpoint = config.endpoint
    if endpoint.kind == "local":
        from ananke.backends.local import LocalBackend

        return LocalBackend(model_path=endpoint.model_path, schema_in_prompt=schema_in_prompt)
    if endpoint.kind == "http":
        from ananke.backends.http import HttpBackend

        return HttpBackend(config)
    from ananke.backends.openai import OpenAIBackend

    return OpenAIBackend(config, schema_in_prompt=schema_in_prompt)


__all__ = ["Backend", "GenerationResult", "make_backend"]
