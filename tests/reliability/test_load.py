"""A short load run in CI (the full one is `ananke bench load`): every request gets
exactly one correct answer, no 5xx, and the server's memory does not run away."""

from __future__ import annotations

import asyncio

import pytest

from ananke.bench.load import rss_mb, run_load, summarise
from tests.servers import ananke_serve

pytestmark = pytest.mark.model


def test_short_load_run(tmp_path):
    with ananke_serve(log_path=tmp_path / "server.log") as url:
        asyncio.run(run_load(url, 10, 4))  # warm-up
        before = rss_mb(url.process.pid)
        result = asyncio.run(run_load(url, 40, 16))
        after = rss_mb(url.process.pid)
    summary = summarise(result["outcomes"], before, after, 0.0)
    assert summary["requests"] == summary["answered"] == summary["correct_answers"] == 40, summary
    assert summary["server_errors_5xx"] == 0
    assert after - before < 200, summary  # MB; caches are bounded, a leak would keep growing
