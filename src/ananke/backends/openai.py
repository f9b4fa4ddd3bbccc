"""OpenAI backend: drives an existing vLLM or SGLang server (or the Ananke service's own
OpenAI-compatible routes) through `POST /v1/chat/completions`.

Endpoint: `openai+http(s)://host[:port]/v1`, with `?server=vllm` (default, vLLM >= 0.12),
`?server=vllm-legacy` (vLLM < 0.12, `guided_*` fields) or `?server=sglang`. The constraint the
compiler enforces is sent in that server's own structured-output fields (constraints/servers.py);
the client validates every output locally, as for every backend. Pooled connections and the retry
policy (connection failures, 408, 429, 5xx; `Retry-After`) are the HTTP backend's.

When the model is left at the default and the server does not serve it, the backend uses the
first model of the server's `GET /v1/models`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from ananke.backends.http import (
    HEALTH_TIMEOUT_S,
    RETRYABLE_STATUS,
    HttpBackend,
    _json_or_none,
    _retry_after,
    _Retryable,
    _sse_events,
    error_from_response,
)
from ananke.config import PyModalConfig
from ananke.constraints.compiler import CompiledConstraints
from ananke.constraints.servers import FLAVOURS, request_fields, server_constraint
from ananke.engines.base import GenerationResult
from ananke.errors import BackendError, ConfigurationError, GenerationTimeout, ServiceError
from ananke.prompting import build_messages
from ananke.types import DEFAULT_MODEL, PyGenerationRequest


def split_flavour(url: str) -> tuple[str, str]:
    """(the base URL without our `server` query parameter, the flavour it names)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flavours = [v for k, v in query if k == "server"]
    flavour = flavours[-1] if flavours else "vllm"
    if flavour not in FLAVOURS:
        raise ConfigurationError(
            f"endpoint {url!r}: unknown server={flavour!r}; use one of {', '.join(FLAVOURS)}"
        )
    rest = urlencode([(k, v) for k, v in query if k != "server"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), rest, "")), flavour


class OpenAIBackend:
    engine_name = "openai"

    def __init__(self, config: PyModalConfig, schema_in_prompt: bool = True) -> None:
        self.config = config
        base_url, self.flavour = split_flavour(config.endpoint.url or "")
        self._http = HttpBackend(config, base_url=base_url)
        self._schema_in_prompt = schema_in_prompt
        self._model: str | None = None if config.model == DEFAULT_MODEL else config.model

    @property
    def model_name(self) -> str:
        return self._model or self.config.model

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _served_model(self) -> str:
        """The configured model; for the default one, the server's own when it serves another."""
        if self._model is None:
            answer = await self._http.request("GET", "/models")
            ids = [m.get("id") for m in answer.get("data", []) if isinstance(m, dict)]
            self._model = self.config.model if self.config.model in ids or not ids else ids[0]
        return self._model

    def body(self, request: PyGenerationRequest, compiled: CompiledConstraints, model: str) -> dict[str, Any]:
        """The chat-completions body: messages, sampling and the flavour's structured-output fields."""
        body: dict[str, Any] = {
            "model": model,
            "messages": build_messages(request, include_schema=self._schema_in_prompt),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        constraint = server_constraint(request.constraints_ir, compiled)
        return {**body, **request_fields(constraint, self.flavour)}

    async def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | GenerationResult]:
        """With `deltas`, Server-Sent Events (retried until the server accepts the request);
        else one JSON completion (retried as a whole)."""
        model = await self._served_model()
        body = self.body(request, compiled, model)
        started = time.perf_counter()
        if deltas:
            async for item in self._streamed(body, model, started):
                yield item
            return
        answer = await self._http.request("POST", "/chat/completions", body)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            where = self.config.endpoint_url
            raise ServiceError(f"{where} answered no completion: {str(answer)[:200]}") from None
        yield self._result(text, choice.get("finish_reason"), answer, model, started)

    async def _streamed(
        self, body: dict, model: str, started: float
    ) -> AsyncIterator[str | GenerationResult]:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        client = self._http._client

        async def accepted() -> httpx.Response:
            try:
                response = await client.send(
                    client.build_request("POST", "/chat/completions", json=body), stream=True
                )
            except httpx.TimeoutException:
                raise GenerationTimeout(f"no answer from {self.config.endpoint_url} in time") from None
            except httpx.TransportError as exc:
                raise _Retryable(BackendError(f"cannot reach {self.config.endpoint_url}: {exc}")) from None
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                error = error_from_response(response.status_code, _json_or_none(response.content))
                if response.status_code in RETRYABLE_STATUS:
                    raise _Retryable(error, _retry_after(response))
                raise error
            return response

        response = await self._http._with_retries(accepted)
        text, finish, last = [], None, {}
        try:
            async for _event, data in _sse_events(response):
                if data.strip() == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise error_from_response(500, chunk)
                last = chunk if chunk.get("usage") else last
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        text.append(delta)
                        yield delta
                    finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException:
            raise GenerationTimeout(f"no answer from {self.config.endpoint_url} in time") from None
        except httpx.TransportError as exc:
            raise BackendError(f"the stream from {self.config.endpoint_url} broke: {exc}") from None
        finally:
            await response.aclose()
        yield self._result("".join(text), finish, last, model, started)

    def _result(
        self, text: str, finish: str | None, answer: dict, model: str, started: float
    ) -> GenerationResult:
        usage = answer.get("usage") or {}
        return GenerationResult(
            text=text,
            finish_reason=finish or "stop",
            model=answer.get("model") or model,
            tokens_generated=int(usage.get("completion_tokens") or 0),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            generation_time_ms=(time.perf_counter() - started) * 1000,
        )

    async def health(self) -> bool:
        """True when `GET /models` answers 200 within 2 s (vLLM's and SGLang's readiness)."""
        try:
            response = await self._http._client.get("/models", timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
