"""Threads with a large stack for llguidance work.

llguidance recurses over a grammar's nesting; on the default 8 MiB thread stack a chain of about
5,000 nested rules (well under the 1 MiB input cap) overflows it, and a stack overflow in native
code kills the whole process. Every thread that builds or runs a matcher is therefore started
with STACK_BYTES of stack (virtual memory: only the pages touched are ever committed).

The workers that compile, prepare and validate run at a lower CPU priority than the decoding
thread: on a machine with few cores a pathological compile must not slow the other requests.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

STACK_BYTES = 1 << 30  # enough for the deepest grammar the 1 MiB input cap admits
_stack_lock = threading.Lock()


@contextmanager
def big_stacks() -> Iterator[None]:
    """Threads started inside this block get STACK_BYTES of stack."""
    with _stack_lock:  # threading.stack_size is process-wide and read when a thread starts
        previous = threading.stack_size(STACK_BYTES)
        try:
            yield
        finally:
            threading.stack_size(previous)


def start_big_stack_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """Start a daemon thread running `target` on a STACK_BYTES stack."""
    with big_stacks():
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    return thread


GRAMMAR_WORK_NICE = 19  # the lowest: even nice 10 halved decoding beside a compile (bench isolation)


def yield_cpu_to_decoding() -> None:
    """Lower this thread's CPU priority (Linux: a thread is a task with its own nice value), so
    a long compile or mask preparation never slows the sequences decoding on the same cores."""
    if sys.platform != "linux":  # elsewhere setpriority(PRIO_PROCESS, id) names a process
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + GRAMMAR_WORK_NICE)
        )
    except OSError:  # a sandbox that forbids it: run at the process's priority
        pass


class _Workers:
    """Idle big-stack daemon threads, reused: starting a thread with a 1 GiB stack costs about
    0.25 ms, as much as compiling a small schema. A job that finds no idle worker starts a new
    one, so a long job (a compile past its budget) never delays another; at most MAX_IDLE wait."""

    MAX_IDLE = 4

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue] = []  # one inbox per idle worker

    def submit(self, job: Callable[[], None], name: str) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            start_big_stack_thread(lambda: self._serve(inbox), name)
        inbox.put(job)

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        yield_cpu_to_decoding()
        while True:
            inbox.get()()
            with self._lock:
                if len(self._idle) >= self.MAX_IDLE:
                    return
                self._idle.append(inbox)


_workers = _Workers()
if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_workers.reset)


def call_with_big_stack(fn: Callable[[], T], timeout: float | None = None, name: str = "ananke-llg") -> T:
    """Run `fn` on a big-stack thread and return its result (or raise its exception).

    Raises TimeoutError when `timeout` passes first; the thread then finishes on its own.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    _workers.submit(work, name)
    if not done.wait(timeout):
        raise TimeoutError(f"{name} still running after {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
