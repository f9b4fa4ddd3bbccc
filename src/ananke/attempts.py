"""How many attempts a request gets, and what the next attempt asks (client and service alike)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from ananke.constraints import CompiledConstraints
from ananke.types import PyGenerationRequest, PyGenerationResponse

# Attempts for a relaxed schema when the request does not say: the validator's guarantee.
DEFAULT_RELAXED_ATTEMPTS = 3
# Retries sample at least this warm: at temperature 0 a new seed alone would repeat the output.
RETRY_MIN_TEMPERATURE = 0.5


def attempts_allowed(request: PyGenerationRequest, compiled: CompiledConstraints) -> int:
    if request.max_attempts is not None:
        return request.max_attempts
    return DEFAULT_RELAXED_ATTEMPTS if compiled.relaxed else 1


def retry_request(request: PyGenerationRequest, errors: dict[str, str], attempt: int) -> PyGenerationRequest:
    """The next attempt: the validator's reasons added to the prompt, a new seed, some warmth."""
    reasons = "; ".join(f"{name}: {why}" for name, why in errors.items())
    return replace(
        request,
        prompt=(
            f"{request.prompt}\n\nA previous answer was rejected ({reasons[:1000]}). "
            "Answer again and satisfy every requirement."
        ),
        temperature=max(request.temperature, RETRY_MIN_TEMPERATURE),
        seed=None if request.seed is None else request.seed + attempt,
    )


async def run_attempts(
    request: PyGenerationRequest,
    compiled: CompiledConstraints,
    stream: Callable[[PyGenerationRequest], AsyncIterator[Any]],
    respond: Callable[[Any, int], Awaitable[PyGenerationResponse]],
    within: Callable[[Awaitable[Any]], Awaitable[Any]],
    deltas: bool,
) -> AsyncIterator[str | PyGenerationResponse]:
    """One attempt per loop: generate, validate, retry while rejected; then the response.

    `stream(request)` yields text deltas, then one result; `respond(result, attempt)` validates
    it into a response; `within(awaitable)` bounds each wait (the caller's deadline). A stream
    (`deltas`) makes one attempt only: what was streamed cannot be taken back; its verdict is
    reported as it is.
    """
    allowed = 1 if deltas else attempts_allowed(request, compiled)
    attempt_request = request
    for attempt in range(1, allowed + 1):
        items = stream(attempt_request)
        try:
            while True:
                item = await within(anext(items))
                if not isinstance(item, str):  # the result, after the deltas
                    break
                yield item
        finally:
            await items.aclose()
        response = await respond(item, attempt)
        # Only a violation is worth another attempt: a check that could not run (say, a
        # language without a parser) would not run on a new output either.
        if not response.validation.violated or attempt == allowed:
            break
        attempt_request = retry_request(request, response.validation.errors, attempt + 1)
    yield response
