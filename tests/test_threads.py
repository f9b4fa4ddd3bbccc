"""Compile workers' CPU priority follows decoding: low while an engine decodes, normal otherwise."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from ananke import threads

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")

PROCESS_NICE = os.getpriority(os.PRIO_PROCESS, 0)


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.fixture
def engine():
    """Stands for an engine; always left idle so other tests see no decoding."""
    token = object()
    yield token
    threads.set_decoding(token, False)


def test_a_compile_runs_at_the_process_priority_while_nothing_decodes():
    assert threads.call_with_big_stack(own_nice, low_priority=True) == PROCESS_NICE


def test_a_compile_started_while_an_engine_decodes_runs_at_the_lowest_priority(engine):
    threads.set_decoding(engine, True)
    assert threads.call_with_big_stack(own_nice, low_priority=True) == 19
    assert threads.call_with_big_stack(own_nice) == PROCESS_NICE  # other work keeps its priority


def test_a_running_compile_is_lowered_when_decoding_starts_and_its_worker_retires(engine):
    started, decoding_began = threading.Event(), threading.Event()

    def compile_like() -> tuple[int, int, int]:
        started.set()
        before = own_nice()
        assert decoding_began.wait(30)
        return before, own_nice(), threading.get_native_id()

    outcome: dict = {}
    runner = threading.Thread(
        target=lambda: outcome.update(r=threads.call_with_big_stack(compile_like, low_priority=True))
    )
    runner.start()
    assert started.wait(30)
    threads.set_decoding(engine, True)
    decoding_began.set()
    runner.join(30)
    before, after, lowered_tid = outcome["r"]
    assert (before, after) == (PROCESS_NICE, 19)

    threads.set_decoding(engine, False)
    identity = lambda: (own_nice(), threading.get_native_id())  # noqa: E731
    nice, tid = threads.call_with_big_stack(identity, low_priority=True)
    assert nice == PROCESS_NICE and tid != lowered_tid  # the lowered worker was not reused
