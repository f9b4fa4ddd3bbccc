"""Fixtures for the reliability suites: a real `ananke serve` on a free loopback port."""

from __future__ import annotations

import pytest

from tests.servers import ananke_serve

KEY = "reliability-key-93a1"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with ananke_serve("--api-key", KEY, log_path=log) as url:
        yield url, log
