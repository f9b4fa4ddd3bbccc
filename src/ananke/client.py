"""`Ananke`: compile → backend → validate, the same for every endpoint."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from ananke.attempts import attempts_allowed, retry_request
from ananke.backends import make_backend
from ananke.backends.base import Backend
from ananke.config import (
    DEFAULT_CACHE_SIZE,
    ENV_API_KEY,
    ENV_CACHE_SIZE,
    ENV_ENDPOINT,
    ENV_MODEL,
    PyModalConfig,
    check_non_negative_int,
    env_int,
    env_required,
)
from ananke.constraints import CompileCache, CompiledConstraints, CompileLimits, validate
from ananke.constraints.compiler import compile_constraints, constraints_hash
from ananke.engines.base import GenerationResult
from ananke.errors import ConfigurationError, GenerationTimeout, InvalidRequestError
from ananke.prompting import extract_code, language_of
from ananke.types import (
    DEFAULT_MODEL,
    PyConstraintIR,
    PyGenerationMetadata,
    PyGenerationRequest,
    PyGenerationResponse,
    PyProvenance,
    check_schema_mode,
)

_INIT_PARAMS = (
    "modal_endpoint", "modal_api_key", "model", "timeout_secs", "enable_cache", "cache_size",
    "max_retries", "compile_limits", "schema_in_prompt", "schema_mode", "closed_objects",
)  # fmt: skip


class Ananke:
    """Constrained generation against a local engine, an Ananke service or an OpenAI server.

    The endpoint is parsed and checked here; the backend behind it starts lazily (a local model
    loads on the first `generate`). Keyword-only extras: `max_retries` (remote backends),
    `compile_limits` (size/time caps, see CompileLimits) and `schema_in_prompt` (show JSON schemas
    and regexes to the model in the system message; the decoder enforces them either way) and
    `schema_mode` ("strict": a JSON schema with keywords no decoder can enforce is an error;
    "relaxed": those keywords are weakened while decoding, listed in the compile result and in
    `metadata.relaxed`, and outputs are validated against the full schema, with up to 3 attempts)
    and `closed_objects` (True: JSON objects that do not say what other keys they take are
    decoded without undeclared keys; the output stays valid under the schema as written).
    """

    def __init__(
        self,
        modal_endpoint: str,
        modal_api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout_secs: int = 300,
        enable_cache: bool = True,
        cache_size: int = 1000,
        *,
        max_retries: int = 3,
        compile_limits: CompileLimits | None = None,
        schema_in_prompt: bool = True,
        schema_mode: str = "strict",
        closed_objects: bool = True,
    ) -> None:
        self.config = PyModalConfig(
            endpoint_url=modal_endpoint,
            model=model,
            api_key=modal_api_key,
            timeout_secs=timeout_secs,
            max_retries=max_retries,
        )
        check_non_negative_int("cache_size", cache_size)
        if not isinstance(enable_cache, bool):
            raise ConfigurationError(f"enable_cache must be a bool, got {enable_cache!r}")
        self.compile_limits = compile_limits or CompileLimits()
        self.schema_mode = check_schema_mode("schema_mode", schema_mode)
        if not isinstance(closed_objects, bool):
            raise ConfigurationError(f"closed_objects must be a bool, got {closed_objects!r}")
        self.closed_objects = closed_objects
        self._cache = CompileCache(limit=cache_size, enabled=enable_cache)
        self._backend: Backend = make_backend(self.config, schema_in_prompt=schema_in_prompt)

    def __repr__(self) -> str:
        stats = self._cache.stats()
        return (
            f"Ananke(endpoint={self.config.endpoint_url!r}, model={self._backend.model_name!r}, "
            f"timeout_secs={self.config.timeout_secs}, cache={stats['size']}/{stats['limit']})"
        )

    @staticmethod
    def from_env(**overrides: Any) -> Ananke:
        """Build from MODAL_ENDPOINT, MODAL_API_KEY, MODAL_MODEL and ANANKE_CACHE_SIZE.

        Keyword overrides win over the environment, e.g. `Ananke.from_env(cache_size=500)`.
        """
        unknown = set(overrides) - set(_INIT_PARAMS)
        if unknown:
            raise ConfigurationError(
                f"unknown Ananke.from_env override(s): {sorted(unknown)}; known: {list(_INIT_PARAMS)}"
            )
        settings: dict[str, Any] = {
            "modal_endpoint": overrides.pop("modal_endpoint", None) or env_required(ENV_ENDPOINT),
            "modal_api_key": os.environ.get(ENV_API_KEY) or None,
            "model": os.environ.get(ENV_MODEL) or DEFAULT_MODEL,
        }
        if "cache_size" not in overrides:
            settings["cache_size"] = env_int(ENV_CACHE_SIZE, DEFAULT_CACHE_SIZE)
        settings.update(overrides)
        return Ananke(**settings)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Ananke:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._backend.aclose()

    # ------------------------------------------------------------------ constraints

    async def _compiled(
        self,
        constraints: list[PyConstraintIR],
        schema_mode: str | None = None,
        closed_objects: bool | None = None,
    ) -> tuple[CompiledConstraints, bool]:
        if not isinstance(constraints, (list, tuple)) or not all(
            isinstance(c, PyConstraintIR) for c in constraints
        ):
            raise InvalidRequestError("constraints must be a list of PyConstraintIR")
        mode = check_schema_mode("schema_mode", schema_mode or self.schema_mode)
        closed = self.closed_objects if closed_objects is None else closed_objects
        key = constraints_hash(list(constraints), mode, closed)
        cached = self._cache.peek(key)
        if cached is not None:
            return cached, True
        return await asyncio.to_thread(
            self._cache.get_or_compile,
            key,
            lambda: compile_constraints(list(constraints), self.compile_limits, mode, closed),
        )

    async def compile_constraints(
        self,
        constraints: list[PyConstraintIR],
        *,
        on_service: bool = False,
        schema_mode: str | None = None,
        closed_objects: bool | None = None,
    ) -> dict:
        """`{"hash", "compiled_at", "schema", "enforced", "validated_only", …, "closed"}`; cached.

        Compiles here (the same compiler the service runs); `on_service=True` asks the remote
        service to compile instead, with its own cache. `schema_mode` and `closed_objects`
        override the client's.
        """
        remote = self._remote() if on_service else None
        if remote is not None:
            from ananke.wire import CompileBody, WireConstraint

            body = CompileBody(
                constraints=[WireConstraint.from_ir(c) for c in constraints],
                schema_mode=schema_mode or self.schema_mode,
                closed_objects=self.closed_objects if closed_objects is None else closed_objects,
            )
            return await remote("POST", "/v1/compile", body.model_dump())
        compiled, hit = await self._compiled(constraints, schema_mode, closed_objects)
        return {**compiled.to_dict(), "cache_hit": hit}

    async def clear_cache(self, *, on_service: bool = False) -> None:
        remote = self._remote() if on_service else None
        if remote is not None:
            await remote("POST", "/v1/cache/clear")
            return
        self._cache.clear()

    async def cache_stats(self, *, on_service: bool = False) -> dict[str, int]:
        """`size` and `limit`, plus `hits`, `misses`, `evictions` and `enabled` (0/1)."""
        remote = self._remote() if on_service else None
        if remote is not None:
            return await remote("GET", "/v1/cache")
        return self._cache.stats()

    def _remote(self):
        """The service's request function for remote backends, else None (local)."""
        return getattr(self._backend, "request", None)

    # ------------------------------------------------------------------ generation

    async def health_check(self) -> bool:
        """True when the backend can serve; False (never an exception) when it cannot."""
        return await self._backend.health()

    async def generate(self, request: PyGenerationRequest) -> PyGenerationResponse:
        """Generate, validate and describe one output. Raises AnankeError / GenerationTimeout."""
        async for item in self._run(request, deltas=False):
            if isinstance(item, PyGenerationResponse):
                return item
        raise AssertionError("generation ended without a response")  # pragma: no cover

    def generate_stream(self, request: PyGenerationRequest) -> AsyncIterator[str | PyGenerationResponse]:
        """Text deltas as the model writes them, then the full `PyGenerationResponse`.

        `timeout_secs` bounds the whole generation; on timeout (or when the consumer stops
        iterating) decoding stops and `GenerationTimeout` is raised.
        """
        return self._run(request, deltas=True)

    async def _run(
        self, request: PyGenerationRequest, deltas: bool
    ) -> AsyncIterator[str | PyGenerationResponse]:
        """Compile, then one attempt per loop: generate, validate, retry while rejected.

        A stream makes one attempt only (what was streamed cannot be taken back); its verdict is
        reported as it is.
        """
        if not isinstance(request, PyGenerationRequest):
            raise InvalidRequestError(f"generate expects a PyGenerationRequest, got {type(request)}")
        timeout = self.config.timeout_secs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def remaining() -> float:
            return max(0.0, deadline - loop.time())

        try:
            if request.schema_mode is None:  # the backend (maybe a remote service) compiles the same
                request = replace(request, schema_mode=self.schema_mode)
            if request.closed_objects is None:
                request = replace(request, closed_objects=self.closed_objects)
            compiling = self._compiled(request.constraints_ir, request.schema_mode, request.closed_objects)
            compiled, hit = await asyncio.wait_for(compiling, remaining())
            allowed = 1 if deltas else attempts_allowed(request, compiled)
            attempt_request = request
            for attempt in range(1, allowed + 1):
                stream = self._backend.stream(attempt_request, compiled, deltas=deltas)
                try:
                    while True:
                        item = await asyncio.wait_for(anext(stream), remaining())
                        if isinstance(item, GenerationResult):
                            break
                        yield item
                finally:
                    await stream.aclose()
                response = await asyncio.to_thread(self._response, request, compiled, hit, item, attempt)
                # Only a violation is worth another attempt: a check that could not run (say, a
                # language without a parser) would not run on a new output either.
                if not response.validation.violated or attempt == allowed:
                    break
                attempt_request = retry_request(request, response.validation.errors, attempt + 1)
        except GenerationTimeout:  # a backend's own, with its own message
            raise
        except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
            raise GenerationTimeout(f"generation took longer than timeout_secs={timeout}") from None
        yield response

    def _response(
        self,
        request: PyGenerationRequest,
        compiled: CompiledConstraints,
        hit: bool,
        result: GenerationResult,
        attempt: int = 1,
    ) -> PyGenerationResponse:
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
