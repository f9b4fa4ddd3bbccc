"""Several endpoints behind one client: requests spread round-robin, failures fail over.

`modal_endpoint="https://a.example,https://b.example"` (or the same in `MODAL_ENDPOINT`) builds
one backend per endpoint (Ananke services and `openai+` servers may be mixed). Each request
starts at the next endpoint in turn. When an endpoint cannot be reached or answers 408, 429 or
5xx, it is marked down for COOLDOWN_S and the request moves on to the next one; endpoints marked
down are tried last, so a request still completes while any endpoint works. After a full round
without success the client waits (exponential backoff with jitter) and starts another round, up
to `max_retries` more rounds. Other errors (a bad request, a refused key, a timeout) are the
request's own and are raised at once. A stream fails over only before its first delta.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ananke.backends.base import Backend
from ananke.backends.http import RETRYABLE_STATUS, backoff_delay
from ananke.config import PyModalConfig
from ananke.constraints.compiler import CompiledConstraints
from ananke.engines.base import GenerationResult
from ananke.errors import AnankeError, BackendError, ConfigurationError, ServiceError
from ananke.types import PyGenerationRequest

log = logging.getLogger(__name__)

COOLDOWN_S = 5.0


def is_failover_error(exc: AnankeError) -> bool:
    """Errors of the endpoint rather than of the request: another endpoint may succeed."""
    if isinstance(exc, ServiceError):
        return exc.status_code is None or exc.status_code in RETRYABLE_STATUS
    return type(exc) is BackendError


@dataclasses.dataclass
class Member:
    url: str
    backend: Backend
    down_until: float = 0.0

    def up(self, now: float) -> bool:
        return self.down_until <= now


class FailoverBackend:
    engine_name = "failover"

    def __init__(self, config: PyModalConfig, schema_in_prompt: bool = True) -> None:
        from ananke.backends import make_backend

        self.config = config
        self.members: list[Member] = []
        for part in config.endpoint_url.split(","):
            # one attempt per endpoint and round: this class does the retrying, across endpoints
            sub = dataclasses.replace(config, endpoint_url=part.strip(), max_retries=0)
            self.members.append(Member(part.strip(), make_backend(sub, schema_in_prompt=schema_in_prompt)))
        self._turn = 0

    @property
    def model_name(self) -> str:
        return self.members[0].backend.model_name

    def order(self) -> list[Member]:
        """Endpoints that are up, starting at the next in turn; then those down, soonest back first."""
        now = time.monotonic()
        start = self._turn % len(self.members)
        self._turn += 1
        rotated = self.members[start:] + self.members[:start]
        return [m for m in rotated if m.up(now)] + sorted(
            (m for m in rotated if not m.up(now)), key=lambda m: m.down_until
        )

    def _mark_down(self, member: Member, exc: AnankeError) -> None:
        member.down_until = time.monotonic() + COOLDOWN_S
        log.warning("endpoint %s marked down for %.0f s: %s", member.url, COOLDOWN_S, exc)

    async def _rounds(self, attempt):
        """Call `attempt(member)` until one succeeds; yields nothing, returns its result."""
        last: AnankeError | None = None
        for round_ in range(self.config.max_retries + 1):
            if round_:
                await asyncio.sleep(backoff_delay(round_ - 1, None))
            for member in self.order():
                try:
                    result = await attempt(member)
                except AnankeError as exc:
                    if not is_failover_error(exc):
                        raise
                    self._mark_down(member, exc)
                    last = exc
                    continue
                member.down_until = 0.0
                return result
        assert last is not None
        raise BackendError(f"every endpoint failed ({len(self.members)} tried); last error: {last}") from last

    async def stream(
        self, request: PyGenerationRequest, compiled: CompiledConstraints, deltas: bool = True
    ) -> AsyncIterator[str | GenerationResult]:
        last: AnankeError | None = None
        for round_ in range(self.config.max_retries + 1):
            if round_:
                await asyncio.sleep(backoff_delay(round_ - 1, None))
            for member in self.order():
                started_output = False
                try:
                    async with aclosing(member.backend.stream(request, compiled, deltas=deltas)) as items:
                        async for item in items:
                            if isinstance(item, GenerationResult):
                                member.down_until = 0.0
                                yield item
                                return
                            started_output = True
                            yield item
                except AnankeError as exc:
                    if started_output or not is_failover_error(exc):
                        raise
                    self._mark_down(member, exc)
                    last = exc
        assert last is not None
        raise BackendError(f"every endpoint failed ({len(self.members)} tried); last error: {last}") from last

    async def request(self, method: str, path: str, body: dict | None = None) -> Any:
        """An Ananke service request (compile, cache) on the first endpoint that answers."""

        async def attempt(member: Member) -> Any:
            call = getattr(member.backend, "request", None)
            if call is None:
                raise ConfigurationError(f"{member.url} is not an Ananke service; it has no {path}")
            return await call(method, path, body)

        return await self._rounds(attempt)

    async def health(self) -> bool:
        """True when any endpoint is healthy; marks the unhealthy ones down."""
        results = await asyncio.gather(*(m.backend.health() for m in self.members))
        now = time.monotonic()
        for member, ok in zip(self.members, results, strict=True):
            member.down_until = 0.0 if ok else now + COOLDOWN_S
        return any(results)

    async def aclose(self) -> None:
        await asyncio.gather(*(m.backend.aclose() for m in self.members))
