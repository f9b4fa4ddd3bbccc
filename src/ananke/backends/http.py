"""HTTP backend: the client half of the Ananke service's wire protocol (v1).

One pooled `httpx.AsyncClient` per `Ananke` instance. Retries (up to `max_retries`) only what
may be retried — connection failures, 408, 429 and 5xx — with exponential backoff, jitter and
`Retry-After`; never another 4xx. `generate_stream` uses Server-Sent Events (retried only before
the first delta); `generate` one JSON answer. Either way, a consumer that stops (a timeout, a
cancelled task) closes the connection and the server cancels the work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from pydantic import ValidationError

from ananke.config import PyModalConfig
from ananke.constraints.compiler import CompiledConstraints
from ananke.engines.base import GenerationResult
from ananke.errors import (
    AnankeError,
    AuthenticationError,
    BackendError,
    ConstraintCompileError,
    GenerationTimeout,
    InvalidRequestError,
    ServiceError,
)
from ananke.types import PyGenerationRequest
from ananke.wire import GenerateBody, GenerateResult

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
HEALTH_TIMEOUT_S = 2.0


class _Retryable(Exception):
    def __init__(self, error: AnankeError, retry_after: float | None = None) -> None:
        self.error, self.retry_after = error, retry_after


def error_from_response(status: int, body: Any) -> AnankeError:
    """The typed error for an error answer, with the server's own message."""
    detail = body.get("error", body) if isinstance(body, dict) else {}
    if not isinstance(detail, dict):  # e.g. {"error": "text"}
        detail = {"message": str(detail)}
    message = detail.get("message") or f"HTTP {status}"
    if status in (401, 403):
        return AuthenticationError(f"the service refused the API key: {message}")
    if status == 400 and detail.get("type") == "constraint_error":
        return ConstraintCompileError(message, detail.get("constraint"))
    if status in (413, 422):
        return InvalidRequestError(message)
    if status == 504:
        return GenerationTimeout(f"the service timed out: {message}")
    return ServiceError(f"the service answered {status}: {message}", status_code=status)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
    delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
    return max(delay, retry_after or 0.0)


class HttpBackend:
    engine_name = "http"

    def __init__(self, config: PyModalConfig, *, base_url: str | None = None) -> None:
        self.config = config
        headers = {"user-agent": "ananke-python"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url or config.endpoint.url or "",
            headers=headers,
            timeout=httpx.Timeout(config.timeout_secs, connect=min(10.0, config.timeout_secs)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self._model = config.model

    @property
    def model_name(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ plain requests

    async def request(self, method: str, path: str, body: dict | None = None) -> Any:
        """One JSON request with the retry policy; returns the decoded JSON answer."""
        content = None if body is None else json.dumps(body).encode()
        return await self._with_retries(lambda: self._once(method, path, content, _json_or_none))

    async def _once(self, method: str, path: str, content: bytes | None, parse: Callable[[bytes], Any]):
        """One try: the answer's body through `parse` (None: malformed, retried), or the typed
        error (`_Retryable` for what may be retried)."""
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = await self._client.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise GenerationTimeout(f"no answer from {self.config.endpoint_url} in time ({exc})") from None
        except httpx.TransportError as exc:
            raise _Retryable(BackendError(f"cannot reach {self.config.endpoint_url}: {exc}")) from None
        if response.status_code >= 400:
            error = error_from_response(response.status_code, _json_or_none(response.content))
            if response.status_code in RETRYABLE_STATUS:
                raise _Retryable(error, _retry_after(response))
            raise error
        data = parse(response.content)
        if data is None:
            malformed = f"{path} answered malformed JSON or not the expected answer"
            raise _Retryable(ServiceError(malformed, status_code=response.status_code))
        return data

    async def _with_retries(self, once):
        for attempt in range(self.config.max_retries + 1):
            try:
                return await once()
            except _Retryable as retry:
                if attempt == self.config.max_retries:
                    raise retry.error from None
                delay = backoff_delay(attempt, retry.retry_after)
                log.info("retrying in %.2f s after: %s", delay, retry.error)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def health(self) -> bool:
        """True only for a 200 from /health with status "ok"; False within 2 s otherwise."""
        try:
            response = await self._client.get("/health", timeout=HEALTH_TIMEOUT_S)
            data = _json_or_none(response.content)
        except httpx.HTTPError:
            return False
        ok = response.status_code == 200 and isinstance(data, dict) and data.get("status") == "ok"
        if ok and data.get("model"):
            self._model = data["model"]
        return ok

    # ------------------------------------------------------------------ generation

    async def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | GenerationResult]:
        # the service takes deadlines of 1 s and more; a shorter client timeout still applies here
        deadline = max(1.0, self.config.timeout_secs)
        body = GenerateBody.from_request(request, stream=deltas, timeout_secs=deadline)
        content = body.model_dump_json(exclude_none=True).encode()
        if not deltas:  # one JSON answer; the server then sends nothing per token
            result = await self._with_retries(
                lambda: self._once("POST", "/v1/generate", content, _generate_result_or_none)
            )
            self._model = result.model
            yield result.to_backend()
            return
        for attempt in range(self.config.max_retries + 1):
            started_output = False
            try:
                async with self._client.stream(
                    "POST", "/v1/generate", content=content, headers={"content-type": "application/json"}
                ) as response:
                    if response.status_code >= 400:
                        answer = _json_or_none(await response.aread())
                        error = error_from_response(response.status_code, answer)
                        if response.status_code in RETRYABLE_STATUS:
                            raise _Retryable(error, _retry_after(response))
                        raise error
                    async for event, data in _sse_events(response):
                        if event == "done":
                            result = GenerateResult.model_validate_json(data)
                            self._model = result.model
                            yield result.to_backend()
                            return
                        if event == "error":
                            body_ = json.loads(data)
                            raise error_from_response(int(body_.get("status", 500)), body_)
                        started_output = True
                        yield json.loads(data)["delta"]
                raise ServiceError("the service closed the stream without a result")
            except httpx.TimeoutException:
                raise GenerationTimeout(f"no answer from {self.config.endpoint_url} in time") from None
            except (httpx.TransportError, _Retryable) as exc:
                error = (
                    exc.error
                    if isinstance(exc, _Retryable)
                    else BackendError(f"connection to {self.config.endpoint_url} failed: {exc}")
                )
                if started_output or attempt == self.config.max_retries:
                    raise error from None
                delay = backoff_delay(attempt, exc.retry_after if isinstance(exc, _Retryable) else None)
                log.info("retrying in %.2f s after: %s", delay, error)
                await asyncio.sleep(delay)


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _generate_result_or_none(content: bytes) -> GenerateResult | None:
    try:
        return GenerateResult.model_validate_json(content)
    except ValidationError:
        return None


async def _sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body; `message` when no event is named."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
