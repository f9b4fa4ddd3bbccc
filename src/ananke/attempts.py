"""How many attempts a request gets, and what the next attempt asks (client and service alike)."""

from __future__ import annotations

from dataclasses import replace

from ananke.constraints import CompiledConstraints
from ananke.types import PyGenerationRequest

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
