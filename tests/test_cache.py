import asyncio
import threading
import time

import pytest

from ananke import Ananke, PyConstraintIR
from ananke.constraints import CompileCache, compile_constraints, constraints_hash


def _ir(i: int) -> list[PyConstraintIR]:
    return [PyConstraintIR(f"c{i}", regex_patterns=[f"a{{{i}}}"])]


def _fill(cache: CompileCache, i: int):
    return cache.get_or_compile(constraints_hash(_ir(i)), lambda: compile_constraints(_ir(i)))


def test_lru_eviction_order_and_stats():
    cache = CompileCache(limit=2)
    _fill(cache, 1)
    _fill(cache, 2)
    assert _fill(cache, 1)[1] is True  # hit, 1 becomes most recent
    _fill(cache, 3)  # evicts 2, the least recently used
    assert cache.keys() == [constraints_hash(_ir(1)), constraints_hash(_ir(3))]
    assert _fill(cache, 2)[1] is False
    stats = cache.stats()
    assert stats["size"] == 2 and stats["limit"] == 2
    assert (stats["hits"], stats["misses"], stats["evictions"]) == (1, 4, 2)


def test_disabled_cache_caches_nothing():
    cache = CompileCache(limit=10, enabled=False)
    assert _fill(cache, 1)[1] is False
    assert _fill(cache, 1)[1] is False
    assert cache.stats()["size"] == 0


async def test_client_cache_stats_clear_and_disable():
    client = Ananke("local", cache_size=5)
    first = await client.compile_constraints(_ir(1))
    again = await client.compile_constraints(_ir(1))
    assert not first["cache_hit"] and again["cache_hit"]
    assert again["hash"] == first["hash"] and again["compiled_at"] == first["compiled_at"]
    assert (await client.cache_stats())["size"] == 1
    await client.clear_cache()
    assert (await client.cache_stats())["size"] == 0
    off = Ananke("local", enable_cache=False)
    await off.compile_constraints(_ir(1))
    assert (await off.cache_stats())["size"] == 0


def test_concurrent_compile_of_same_list_compiles_once():
    cache = CompileCache()
    calls = []

    def slow_compile():
        calls.append(1)
        time.sleep(0.2)
        return compile_constraints(_ir(4))

    key = constraints_hash(_ir(4))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compile(key, slow_compile)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(r[0]) for r in results}) == 1
    assert sum(1 for r in results if not r[1]) == 1


async def test_concurrent_asyncio_compiles_share_one_result():
    client = Ananke("local")
    results = await asyncio.gather(*[client.compile_constraints(_ir(5)) for _ in range(10)])
    assert len({r["hash"] for r in results}) == 1
    stats = await client.cache_stats()
    assert stats["misses"] == 1 and stats["hits"] == 9


def test_failed_compile_is_not_cached():
    cache = CompileCache()
    bad = [PyConstraintIR("bad", regex_patterns=["a("])]
    for _ in range(2):
        with pytest.raises(RuntimeError, match="invalid at position"):
            cache.get_or_compile(constraints_hash(bad), lambda: compile_constraints(bad))
    assert cache.stats()["size"] == 0 and cache.stats()["misses"] == 2
