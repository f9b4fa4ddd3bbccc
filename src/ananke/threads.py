"""Threads with a large stack for llguidance work.

llguidance recurses over a grammar's nesting; on the default 8 MiB thread stack a chain of about
5,000 nested rules (well under the 1 MiB input cap) overflows it, and a stack overflow in native
code kills the whole process. Every thread that builds or runs a matcher is therefore started
with STACK_BYTES of stack (virtual memory: only the pages touched are ever committed).

Compiles that start while an engine decodes run on workers at the lowest CPU priority: on a
machine with few cores a pathological compile must not slow the requests decoding (llama.cpp's
threads wait for each other at every layer, so one core taken away stalls both). When nothing
decodes they run at the process's priority, so a busy machine does not starve them for nothing
(a thread cannot raise its priority again unprivileged, hence two pools). Only compiles: a
low-priority thread holding the GIL while the OS keeps it waiting stalls every other thread, and a
job's preparation (largely Python: the shortest-output search) is on its own request's path
anyway. Budgets count CPU time, so a constraint gets the same answer on a loaded machine as on an
idle one.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
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


GRAMMAR_WORK_NICE = 19  # for compiles; even nice 10 halved decoding beside them (bench isolation)


def lower_priority(nice: int, tid: int | None = None) -> None:
    """Lower a thread's CPU priority (this one's by default) by `nice` (Linux: a thread is a task
    with its own nice value; once lowered it cannot be raised again without privileges)."""
    if sys.platform != "linux":  # elsewhere setpriority(PRIO_PROCESS, id) names a process
        return
    try:
        tid = tid or threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # a sandbox that forbids it: run at the process's priority
        pass


class _Workers:
    """Idle big-stack daemon threads, reused: starting a thread with a 1 GiB stack costs about
    0.25 ms, as much as compiling a small schema. A job that finds no idle worker starts a new
    one, so a long job (a compile past its budget) never delays another; at most MAX_IDLE wait."""

    MAX_IDLE = 4

    def __init__(self, nice: int = 0, demote_while_decoding: bool = False) -> None:
        self.nice = nice
        self.demote_while_decoding = demote_while_decoding
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue] = []  # one inbox per idle worker
        self._busy: set[int] = set()  # native ids of the workers running a job
        self._demoted: set[int] = set()  # busy workers lowered by demote_busy

    def submit(self, job: Callable[[], None], name: str) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            start_big_stack_thread(lambda: self._serve(inbox), name)
        inbox.put(job)

    def demote_busy(self) -> None:
        """Lower the priority of the jobs running now; their workers then retire (a thread cannot
        be raised back, and this pool's idle workers must keep the pool's priority)."""
        with self._lock:
            for tid in self._busy - self._demoted:
                self._demote(tid)

    def _demote(self, tid: int) -> None:  # with self._lock held
        lower_priority(GRAMMAR_WORK_NICE, tid)
        self._demoted.add(tid)

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        if self.nice:
            lower_priority(self.nice)
        tid = threading.get_native_id()
        while True:
            job = inbox.get()
            with self._lock:
                self._busy.add(tid)
                if self.demote_while_decoding and _decoding:  # decoding began since the submit
                    self._demote(tid)
            job()
            with self._lock:
                self._busy.discard(tid)
                if tid in self._demoted:
                    self._demoted.discard(tid)
                    return
                if len(self._idle) >= self.MAX_IDLE:
                    return
                self._idle.append(inbox)


_workers = _Workers()  # preparation, validation: on a request's own path
_compile_workers = _Workers(demote_while_decoding=True)  # compiles that start while no engine decodes
_low_priority_workers = _Workers(nice=GRAMMAR_WORK_NICE)  # compiles while an engine decodes
_decoding: set[int] = set()  # id() of each engine with sequences in flight
_decoding_lock = threading.Lock()


def set_decoding(engine: object, active: bool) -> None:
    """An engine says whether it has sequences to decode. When the first starts, compiles running
    at the normal priority are lowered, and later ones start low until every engine is idle."""
    with _decoding_lock:
        starting = active and not _decoding
        if active:
            _decoding.add(id(engine))
        else:
            _decoding.discard(id(engine))
    if starting:
        _compile_workers.demote_busy()


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads
    os.register_at_fork(after_in_child=_workers.reset)
    os.register_at_fork(after_in_child=_low_priority_workers.reset)
    os.register_at_fork(after_in_child=_compile_workers.reset)


# A budget counts the CPU time the work itself used (a compile may run at the lowest priority, so
# on a busy machine its wall time says more about the load than about the constraint); wall time
# is capped at this many times the budget, whatever happens.
WALL_CAP_FACTOR = 10
_POLL_S = 0.02


def call_with_big_stack(
    fn: Callable[[], T], timeout: float | None = None, name: str = "ananke-llg", low_priority: bool = False
) -> T:
    """Run `fn` on a big-stack thread and return its result (or raise its exception).

    `low_priority`: on a worker at the lowest CPU priority if an engine is decoding (compiles).
    Raises TimeoutError when the work has used `timeout` seconds of CPU time (of wall time where a
    thread's CPU time cannot be read), or after WALL_CAP_FACTOR times that of wall time; the thread
    then finishes on its own.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        outcome["clock"] = _cpu_clock_of_this_thread()
        outcome["start"] = time.thread_time() if outcome["clock"] is not None else time.monotonic()
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            done.set()

    if low_priority:
        (_low_priority_workers if _decoding else _compile_workers).submit(work, name)
    else:
        _workers.submit(work, name)
    if timeout is None:
        done.wait()
    else:
        wall_deadline = time.monotonic() + timeout * WALL_CAP_FACTOR
        while not done.wait(min(_POLL_S, timeout)):
            if _used(outcome) > timeout or time.monotonic() > wall_deadline:
                raise TimeoutError(f"{name} still running after {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _used(outcome: dict) -> float:
    """Seconds of CPU (else wall) time the work has used so far."""
    if "start" not in outcome:
        return 0.0  # not started yet
    clock = outcome["clock"]
    return (time.clock_gettime(clock) if clock is not None else time.monotonic()) - outcome["start"]


def _cpu_clock_of_this_thread() -> int | None:
    """The clock id of this thread's CPU time, readable from another thread (None: unsupported)."""
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return None
