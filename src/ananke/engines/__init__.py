"""Engines: what runs a model behind the Engine protocol (engines/base.py).

Add an engine: one module with a class that implements Engine, and a line in ENGINES.
"""

from __future__ import annotations

from typing import Any

from ananke.engines.base import Engine, GenerationResult

# `ananke serve --engine NAME`: the module and the function that builds the engine
ENGINES: dict[str, str] = {
    "llamacpp": "ananke.engines.llamacpp:from_options",
    "vllm": "ananke.engines.vllm:from_options",
}


def make_engine(name: str, model: str | None, **options: Any) -> Engine:
    """The engine `name` for `model` (a GGUF path, an HF id); engine-specific `options` (the
    serve command's flags) go to the engine that knows them."""
    import importlib

    module, function = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), function)(model, **options)


__all__ = ["ENGINES", "Engine", "GenerationResult", "make_engine"]
