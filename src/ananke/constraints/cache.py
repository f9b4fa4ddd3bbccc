"""A thread- and asyncio-safe LRU of compiled constraints, keyed by the constraints' hash.

Concurrent requests for the same key compile once: the first caller compiles, the others wait
for its result (or its error, which is not cached).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from ananke.constraints.compiler import CompiledConstraints


class CompileCache:
    def __init__(self, limit: int = 1000, enabled: bool = True) -> None:
        self.limit = limit
        self.enabled = enabled and limit > 0
        self._entries: OrderedDict[str, CompiledConstraints] = OrderedDict()
        self._in_flight: dict[str, Future[CompiledConstraints]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get_or_compile(
        self, key: str, compile_fn: Callable[[], CompiledConstraints]
    ) -> tuple[CompiledConstraints, bool]:
        """Return (compiled, cache_hit). Blocking: call it from a worker thread under asyncio."""
        if not self.enabled:
            with self._lock:
                self.misses += 1
            return compile_fn(), False
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key], True
            waiting = self._in_flight.get(key)
            if waiting is None:
                self.misses += 1
                mine: Future[CompiledConstraints] = Future()
                self._in_flight[key] = mine
        if waiting is not None:  # someone else is compiling this very list
            result = waiting.result()
            with self._lock:
                self.hits += 1
            return result, True
        try:
            result = compile_fn()
        except BaseException as exc:
            with self._lock:
                del self._in_flight[key]
            mine.set_exception(exc)
            raise
        with self._lock:
            del self._in_flight[key]
            self._entries[key] = result
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
                self.evictions += 1
        mine.set_result(result)
        return result, False

    def peek(self, key: str) -> CompiledConstraints | None:
        """The cached entry (counted as a hit) or None; never blocks, so no thread hop is needed."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            return entry

    def keys(self) -> list[str]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "size": len(self._entries),
                "limit": self.limit,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "enabled": int(self.enabled),
            }
