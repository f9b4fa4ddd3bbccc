"""From an engine's or backend's GenerationResult to the public PyGenerationResponse: the output
validated against every constraint (and its language's syntax), with provenance and metadata."""

from __future__ import annotations

import time

from ananke.constraints import CompiledConstraints, validate
from ananke.engines.base import GenerationResult
from ananke.prompting import extract_code, language_of
from ananke.types import (
    PyGenerationMetadata,
    PyGenerationRequest,
    PyGenerationResponse,
    PyProvenance,
)


def build_response(
    request: PyGenerationRequest,
    compiled: CompiledConstraints,
    hit: bool,
    result: GenerationResult,
    attempt: int = 1,
) -> PyGenerationResponse:
    """Validate the output of one attempt and describe it."""
    language = language_of(request)
    code = result.text if request.constraints_ir else extract_code(result.text, language)
    validation = validate(
        result.text, request.constraints_ir, language=syntax_language(request, language), code=code
    )
    tokens = result.tokens_generated
    return PyGenerationResponse(
        code=code,
        text=result.text,
        provenance=PyProvenance(
            model=result.model,
            timestamp=int(time.time()),
            constraints_applied=[c.name for c in request.constraints_ir],
            original_intent=request.prompt,
        ),
        validation=validation,
        metadata=PyGenerationMetadata(
            tokens_generated=tokens,
            generation_time_ms=round(result.generation_time_ms),
            avg_token_time_us=round(result.generation_time_ms * 1000 / tokens) if tokens else 0,
            constraint_compile_time_ms=round(
                (0 if hit else compiled.compile_time_ms) + result.remote_compile_time_ms
            ),
            prompt_tokens=result.prompt_tokens,
            forced_tokens=result.forced_tokens,
            mask_time_us=round(result.mask_time_us),
            finish_reason=result.finish_reason,
            cache_hit=hit,
            attempts=attempt,
            relaxed=list(compiled.relaxed),
            budget_closed=result.budget_closed,
            closing_tokens=result.closing_tokens,
            budget_steered=result.budget_steered,
            loop_breaks=result.loop_breaks,
            completion_search_us=round(result.completion_search_us),
        ),
    )


def syntax_language(request: PyGenerationRequest, language: str | None) -> str | None:
    """The language whose syntax the output is checked in, or None for no syntax check.

    The context's language (or `current_file`'s) when there is one, except for requests with a
    JSON schema: their output is JSON by construction, which the schema check already parses.
    """
    if language is None or any(c.json_schema is not None for c in request.constraints_ir):
        return None
    return language
