"""The Ananke inference service: FastAPI hosting an Engine (llama.cpp on the CPU, or vLLM).

Routes: POST /v1/generate (JSON or Server-Sent Events), POST /v1/compile, GET/POST /v1/cache,
GET /health, GET /metrics (Prometheus), /docs (OpenAPI), and the OpenAI-compatible
/v1/completions, /v1/chat/completions and /v1/models (server/openai_routes.py). Every error body is
`{"error": {"type", "message", ...}}`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from ananke.attempts import attempts_allowed, retry_request
from ananke.compat import timeout_at
from ananke.constraints import CompileCache, CompiledConstraints, CompileLimits, validate
from ananke.constraints.compiler import compile_constraints, constraints_hash
from ananke.engines.base import Engine, GenerationResult
from ananke.errors import (
    AnankeError,
    AuthenticationError,
    ConstraintCompileError,
    GenerationTimeout,
    InvalidRequestError,
)
from ananke.server.openai_routes import Pipeline, add_openai_routes
from ananke.types import check_schema_mode
from ananke.wire import (
    CompileBody,
    CompileResult,
    ErrorBody,
    ErrorDetail,
    GenerateBody,
    GenerateResult,
    Health,
)

log = logging.getLogger("ananke.server")


@dataclass(frozen=True)
class ServerSettings:
    api_key: str | None = None
    max_concurrency: int = 4  # generations running at once
    max_queue: int = 32  # generations waiting; beyond that: 429 with Retry-After
    max_prompt_chars: int = 100_000
    max_tokens: int = 4096
    max_constraints: int = 16
    max_constraint_bytes: int = 1 << 20
    max_body_bytes: int = 8 << 20
    request_timeout_s: float = 300.0
    cache_size: int = 1000
    retry_after_s: int = 1
    schema_mode: str = "strict"  # for requests that do not say
    closed_objects: bool = True  # for requests that do not say


class ApiError(Exception):
    """An error with its HTTP status, rendered as the standard error body."""

    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.extra = status, type_, message, extra


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ananke_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "ananke_request_latency_seconds", "Request latency", ["route"], registry=r,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )  # fmt: skip
        self.tokens = Histogram(
            "ananke_tokens_generated", "Tokens per generation", registry=r,
            buckets=(1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
        )  # fmt: skip
        self.mask_time = Histogram(
            "ananke_mask_time_per_token_seconds", "Token-mask time per generated token", registry=r,
            buckets=(10e-6, 25e-6, 50e-6, 100e-6, 200e-6, 400e-6, 600e-6, 1e-3, 5e-3),
        )  # fmt: skip
        self.cache_hits = Counter("ananke_compile_cache_hits", "Compile cache hits", registry=r)
        self.cache_misses = Counter("ananke_compile_cache_misses", "Compile cache misses", registry=r)
        self.queue_depth = Gauge("ananke_queue_depth", "Generations waiting for a slot", registry=r)
        self.in_flight = Gauge("ananke_in_flight", "Generations running", registry=r)


def _error_response(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _status_of(exc: AnankeError) -> tuple[int, str]:
    if isinstance(exc, ConstraintCompileError):
        return 400, "constraint_error"
    if isinstance(exc, InvalidRequestError):
        return 422, "invalid_request"
    if isinstance(exc, GenerationTimeout):
        return 504, "timeout"
    if isinstance(exc, AuthenticationError):
        return 401, "authentication_error"
    return 503, "backend_error"


class Observe:
    """Plain ASGI middleware (cheaper than @app.middleware): request id, body-size cap, metrics,
    and a 500 with the request id for anything unhandled, after which the server keeps serving."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode(errors="replace")[:64] or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        started, status = time.perf_counter(), 500
        response_started = False

        async def send_with_id(message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        received = 0

        async def capped_receive():
            """Counts body bytes as they arrive: a chunked body has no content-length to check."""
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise StarletteHTTPException(
                        413, f"request body is over the {self.max_body_bytes}-byte limit"
                    )
            return message

        length = headers.get(b"content-length", b"")
        try:
            if length.isdigit() and int(length) > self.max_body_bytes:
                message = f"request body is {int(length)} bytes, over the {self.max_body_bytes}-byte limit"
                detail = ErrorDetail(type="payload_too_large", message=message, request_id=request_id)
                await _error_response(413, detail)(scope, receive, send_with_id)
            else:
                await self.app(scope, capped_receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s (request %s)", scope.get("path"), request_id)
            if not response_started:
                detail = ErrorDetail(
                    type="internal_error",
                    message="internal server error; it has been logged",
                    request_id=request_id,
                )
                await _error_response(500, detail)(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)


class RequireKey:
    """Every path but /health needs `Authorization: Bearer <key>` — routes, docs and unknown paths
    alike, checked before routing. The comparison takes constant time."""

    OPEN_PATHS = frozenset({"/health"})

    def __init__(self, app, api_key: str) -> None:
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token, self.key):
            await self.app(scope, receive, send)
            return
        detail = ErrorDetail(
            type="authentication_error",
            message="missing or wrong API key (Authorization: Bearer …)",
            request_id=scope.get("state", {}).get("request_id"),
        )
        await _error_response(401, detail, {"WWW-Authenticate": "Bearer"})(scope, receive, send)


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    """The service hosting `engine` (engines/base.py): started with the app (in its event loop,
    which vLLM's engine binds to) and closed with it. An engine that fails to start leaves the
    service up and answering 503 on /health, with the reason in the log."""
    settings = settings or ServerSettings()
    check_schema_mode("ServerSettings.schema_mode", settings.schema_mode)
    metrics = Metrics()
    cache = CompileCache(limit=settings.cache_size)
    limits = CompileLimits(max_input_bytes=settings.max_constraint_bytes)
    running = asyncio.Semaphore(settings.max_concurrency)
    compiling = asyncio.Semaphore(2)  # compile threads at once, so a flood of grammar bombs queues
    admitted = {"count": 0}  # running + waiting; checked and changed on the event loop only
    engine_name = getattr(engine, "engine_name", type(engine).__name__)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            await engine.start()
        except Exception:
            log.exception("the %s engine did not start; /health answers 503", engine_name)
        try:
            yield
        finally:
            await engine.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="Ananke inference service",
        version="1",
        description="Constrained generation: JSON Schema, grammar and regex constraints enforced per token.",
        responses={
            400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 413: {"model": ErrorBody},
            422: {"model": ErrorBody}, 429: {"model": ErrorBody}, 503: {"model": ErrorBody},
            504: {"model": ErrorBody},
        },
    )  # fmt: skip
    app.state.engine, app.state.settings, app.state.metrics, app.state.cache = (
        engine,
        settings,
        metrics,
        cache,
    )

    # ------------------------------------------------------------------ plumbing

    if settings.api_key is not None:
        app.add_middleware(RequireKey, api_key=settings.api_key)
    app.add_middleware(Observe, metrics=metrics, max_body_bytes=settings.max_body_bytes)  # outermost

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        headers = {"Retry-After": str(settings.retry_after_s)} if exc.status in (429, 503) else None
        detail = ErrorDetail(
            type=exc.type, message=exc.message, request_id=request.state.request_id, **exc.extra
        )
        return _error_response(exc.status, detail, headers)

    @app.exception_handler(AnankeError)
    async def ananke_error(request: Request, exc: AnankeError):
        status, type_ = _status_of(exc)
        detail = ErrorDetail(
            type=type_,
            message=getattr(exc, "reason", None) or str(exc),
            constraint=getattr(exc, "constraint", None),
            request_id=request.state.request_id,
        )
        return _error_response(status, detail, {"Retry-After": "1"} if status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        """422 naming every bad field (the first five), e.g. `max_tokens: Input should be …`."""
        messages, fields = [], []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            if error.get("type") == "json_invalid":
                messages.append(f"request body is not valid JSON: {error.get('ctx', {}).get('error', '')}")
                continue
            fields.append(where)
            if error.get("type") == "extra_forbidden":
                messages.append(f"unknown field {where!r}")
            else:
                messages.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
        detail = ErrorDetail(
            type="invalid_request",
            message="; ".join(messages) or "invalid request",
            field=fields[0] if fields else None,
            request_id=request.state.request_id,
        )
        return _error_response(422, detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:  # FastAPI's words for it
            message = "request body could not be parsed as JSON (not UTF-8, or nested too deeply)"
            kind[400] = "invalid_request"
        detail = ErrorDetail(
            type=kind.get(exc.status_code, "http_error"),
            message=message,
            request_id=request.state.request_id,
        )
        return _error_response(exc.status_code, detail)

    def check_limits(body: GenerateBody) -> None:
        if len(body.prompt) > settings.max_prompt_chars:
            raise ApiError(
                413, "payload_too_large",
                f"prompt is {len(body.prompt)} characters, over the limit of {settings.max_prompt_chars}",
                field="prompt",
            )  # fmt: skip
        if body.max_tokens > settings.max_tokens:
            raise ApiError(
                422, "invalid_request",
                f"max_tokens is {body.max_tokens}, over the limit of {settings.max_tokens}",
                field="max_tokens",
            )  # fmt: skip
        check_constraint_limits(body.constraints)

    def check_constraint_limits(constraints: list) -> None:
        if len(constraints) > settings.max_constraints:
            raise ApiError(
                422, "invalid_request",
                f"{len(constraints)} constraints, over the limit of {settings.max_constraints}",
                field="constraints",
            )  # fmt: skip
        for c in constraints:
            size = sum(len(t.encode()) for t in [c.json_schema or "", c.grammar or "", *c.regex_patterns])
            if size > settings.max_constraint_bytes:
                raise ApiError(
                    413, "payload_too_large",
                    f"constraint {c.name!r} is {size} bytes, over the limit of "
                    f"{settings.max_constraint_bytes}",
                    field="constraints", constraint=c.name,
                )  # fmt: skip

    async def compiled_for(
        constraints: list, schema_mode: str | None, closed_objects: bool | None = None
    ) -> tuple[CompiledConstraints, bool]:
        irs = [c.to_ir() for c in constraints]
        mode = schema_mode or settings.schema_mode
        closed = settings.closed_objects if closed_objects is None else closed_objects
        key = constraints_hash(irs, mode, closed)
        cached = cache.peek(key)
        if cached is not None:
            metrics.cache_hits.inc()
            return cached, True
        async with compiling:
            compiled, hit = await asyncio.to_thread(
                cache.get_or_compile, key, lambda: compile_constraints(irs, limits, mode, closed)
            )
        (metrics.cache_hits if hit else metrics.cache_misses).inc()
        return compiled, hit

    def ensure_capacity() -> None:
        """Refuse at once (429) when running + waiting generations fill every place."""
        if admitted["count"] >= settings.max_concurrency + settings.max_queue:
            raise ApiError(429, "overloaded", "the server is at capacity; retry after the Retry-After delay")

    def observe(result: GenerationResult, compiled: CompiledConstraints) -> None:
        metrics.tokens.observe(result.tokens_generated)
        if result.tokens_generated and compiled.grammar is not None:
            metrics.mask_time.observe(result.mask_time_us / 1e6 / result.tokens_generated)

    async def generations(
        body: GenerateBody, compiled: CompiledConstraints, hit: bool, request_id: str
    ) -> AsyncIterator[str | GenerateResult]:
        """The engine's deltas, then the validated result; rejected outputs get more attempts."""
        request = body.to_request()
        check = bool(request.constraints_ir) and body.validate_output
        allowed = attempts_allowed(request, compiled) if check and not body.stream else 1
        attempt_request = request
        for attempt in range(1, allowed + 1):
            stream = engine.stream(attempt_request, compiled, deltas=body.stream)
            try:
                async for item in stream:
                    if isinstance(item, GenerationResult):
                        break
                    yield item
            finally:
                await stream.aclose()  # stops decoding if we leave early
            observe(item, compiled)
            verdict = None
            if check:
                verdict = await asyncio.to_thread(validate, item.text, request.constraints_ir)
            if verdict is None or not verdict.violated or attempt == allowed:
                yield GenerateResult.from_backend(item, compiled, hit, request_id, verdict, attempt)
                return
            attempt_request = retry_request(request, verdict.errors, attempt + 1)

    async def events(
        body: GenerateBody, compiled: CompiledConstraints, hit: bool, deadline: float, request_id: str
    ) -> AsyncIterator[str | GenerateResult]:
        """Wait for a slot, then the engine's deltas and the final result, within the deadline."""
        admitted["count"] += 1
        metrics.queue_depth.inc()
        queued = True
        try:
            async with timeout_at(deadline), running:
                metrics.queue_depth.dec()
                queued = False
                metrics.in_flight.inc()
                inner = generations(body, compiled, hit, request_id)
                try:
                    async for item in inner:
                        yield item
                finally:
                    await inner.aclose()  # stops decoding if we leave early
                    metrics.in_flight.dec()
        except TimeoutError:
            raise GenerationTimeout("the request passed its deadline") from None
        finally:
            if queued:
                metrics.queue_depth.dec()
            admitted["count"] -= 1

    async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
        """Run `work`; cancel it when the client goes away (its generation then stops): None.

        The server tells us: once the body is read, the next ASGI message is `http.disconnect`,
        so one waiting task replaces polling (which cost ~0.1 ms of the event loop per poll)."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is shutting down: the work goes too
            task.cancel()
            raise
        finally:
            gone.cancel()
        if not task.done():
            task.cancel()
            log.info("client disconnected; generation %s cancelled", request.state.request_id)
            await asyncio.wait({task})
            return None
        return task.result()

    async def _client_gone(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    # ------------------------------------------------------------------ routes

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health():
        ok = await engine.health()
        body = Health(status="ok" if ok else "unavailable", model=engine.model_name, engine=engine_name)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.post("/v1/generate", response_model=GenerateResult)
    async def generate(body: GenerateBody, request: Request):
        timeout_s = min(body.timeout_secs or settings.request_timeout_s, settings.request_timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout_s
        check_limits(body)
        body.to_request()  # InvalidRequestError (422) before any work
        ensure_capacity()  # 429 before any work
        # a constraint that does not compile is a 400 before any stream starts
        compiled, hit = await compiled_for(body.constraints, body.schema_mode, body.closed_objects)
        request_id = request.state.request_id
        work = events(body, compiled, hit, deadline, request_id)
        if body.stream:
            return StreamingResponse(sse(work, request_id), media_type="text/event-stream")

        async def collect() -> GenerateResult:
            async for item in work:
                if isinstance(item, GenerateResult):
                    return item
            raise AnankeError("the engine ended without a result")

        result = await until_disconnect(request, collect())
        if result is None:  # nobody is listening: a quiet close, not a server error in the log
            return Response(status_code=499)
        # serialised once here; letting FastAPI re-validate it against response_model costs ~0.3 ms
        return Response(result.model_dump_json(), media_type="application/json")

    async def sse(work: AsyncIterator[str | GenerateResult], request_id: str) -> AsyncIterator[str]:
        """`data: {"delta": …}` events, then `event: done` with the result, or `event: error`."""
        try:
            async for item in work:
                if isinstance(item, GenerateResult):
                    yield f"event: done\ndata: {item.model_dump_json()}\n\n"
                else:
                    yield f"data: {json.dumps({'delta': item})}\n\n"
        except AnankeError as exc:
            status, type_ = _status_of(exc)
            detail = ErrorDetail(type=type_, message=str(exc), request_id=request_id)
            payload = {"status": status, **ErrorBody(error=detail).model_dump(exclude_none=True)}
            yield f"event: error\ndata: {json.dumps(payload)}\n\n"

    @app.post("/v1/compile", response_model=CompileResult)
    async def compile_route(body: CompileBody):
        check_constraint_limits(body.constraints)
        compiled, hit = await compiled_for(body.constraints, body.schema_mode, body.closed_objects)
        return CompileResult.from_compiled(compiled, hit).model_dump(by_alias=True)

    @app.get("/v1/cache")
    async def cache_stats() -> dict[str, int]:
        return cache.stats()

    @app.post("/v1/cache/clear")
    async def cache_clear() -> dict[str, int]:
        cache.clear()
        return cache.stats()

    @app.get("/metrics")
    async def metrics_route():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # OpenAI-compatible routes (server/openai_routes.py) over the same steps as /v1/generate
    pipeline = Pipeline(
        check_limits, ensure_capacity, compiled_for, events, until_disconnect,
        settings.request_timeout_s, settings.max_tokens,
    )  # fmt: skip
    add_openai_routes(app, pipeline)
    return app
