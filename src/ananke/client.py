"""`Ananke`: compile → backend → validate, the same for every endpoint. It delegates: options to
config.py, the backend to backends.make_backend, the attempts loop to attempts.py, validation
and the response to responses.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from ananke.attempts import run_attempts
from ananke.backends import make_backend
from ananke.backends.base import Backend
from ananke.compat import timeout_at
from ananke.config import PyModalConfig, check_client_options, client_settings_from_env
from ananke.constraints import CompileCache, CompiledConstraints, CompileLimits
from ananke.constraints.compiler import compile_constraints, constraints_hash
from ananke.errors import GenerationTimeout, InvalidRequestError
from ananke.responses import build_response
from ananke.types import (
    DEFAULT_MODEL,
    PyConstraintIR,
    PyGenerationRequest,
    PyGenerationResponse,
    check_schema_mode,
)

T = TypeVar("T")


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
        self.schema_mode = check_client_options(cache_size, enable_cache, schema_mode, closed_objects)
        self.compile_limits = compile_limits or CompileLimits()
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
        return Ananke(**client_settings_from_env(overrides))

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
        # one deadline around the whole call, not asyncio.wait_for per step (a task each)
        deadline = asyncio.get_running_loop().time() + self.config.timeout_secs
        with self._timeouts():
            async with timeout_at(deadline), aclosing(self._run(request, False, _as_is)) as items:
                async for item in items:
                    if isinstance(item, PyGenerationResponse):
                        return item
        raise AssertionError("generation ended without a response")  # pragma: no cover

    def generate_stream(self, request: PyGenerationRequest) -> AsyncIterator[str | PyGenerationResponse]:
        """Text deltas as the model writes them, then the full `PyGenerationResponse`.

        `timeout_secs` bounds the whole generation; on timeout (or when the consumer stops
        iterating) decoding stops and `GenerationTimeout` is raised.
        """
        return self._stream(request)

    async def _stream(self, request: PyGenerationRequest) -> AsyncIterator[str | PyGenerationResponse]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_secs

        def within(waiting: Awaitable[T]) -> Awaitable[T]:
            # per step: a deadline around the yields would cancel the consumer's own code
            return asyncio.wait_for(waiting, max(0.0, deadline - loop.time()))

        with self._timeouts():
            async with aclosing(self._run(request, True, within)) as items:
                async for item in items:
                    yield item

    @contextmanager
    def _timeouts(self) -> Iterator[None]:
        """asyncio's timeout as GenerationTimeout; a backend's own keeps its message."""
        try:
            yield
        except GenerationTimeout:
            raise
        except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
            raise GenerationTimeout(
                f"generation took longer than timeout_secs={self.config.timeout_secs}"
            ) from None

    async def _run(
        self,
        request: PyGenerationRequest,
        deltas: bool,
        within: Callable[[Awaitable[Any]], Awaitable[Any]],
    ) -> AsyncIterator[str | PyGenerationResponse]:
        """Compile, then one attempt per loop: generate, validate, retry while rejected.

        A stream makes one attempt only (what was streamed cannot be taken back); its verdict is
        reported as it is. `within` bounds each wait by the caller's deadline.
        """
        if not isinstance(request, PyGenerationRequest):
            raise InvalidRequestError(f"generate expects a PyGenerationRequest, got {type(request)}")
        # the backend (maybe a remote service) compiles the same; one replace: each one re-checks
        # the whole request
        defaults = {"schema_mode": self.schema_mode, "closed_objects": self.closed_objects}
        unset = {name: value for name, value in defaults.items() if getattr(request, name) is None}
        if unset:
            request = replace(request, **unset)
        compiling = self._compiled(request.constraints_ir, request.schema_mode, request.closed_objects)
        compiled, hit = await within(compiling)
        attempts = run_attempts(
            request,
            compiled,
            lambda attempt_request: self._backend.stream(attempt_request, compiled, deltas=deltas),
            lambda result, attempt: asyncio.to_thread(
                build_response, request, compiled, hit, result, attempt
            ),
            within,
            deltas,
        )
        async with aclosing(attempts):
            async for item in attempts:
                yield item


def _as_is(waiting: Awaitable[T]) -> Awaitable[T]:
    return waiting
