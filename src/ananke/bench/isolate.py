"""Run a peer's work item by item in a child process with a memory and time limit.

Peers can crash the process on an ordinary schema (llama-cpp-python's grammar sampler segfaulted
on a Github_medium schema) or grow without bound (Outlines past 24 GB on another). Each item is
sent to a spawned child that caps its address space (RLIMIT_AS); a crash, a MemoryError or an
item that runs past its time limit is recorded as that item's result ({"error": "crash: …"}), the
child is replaced, and the run goes on with the next item.
"""

from __future__ import annotations

import importlib
import multiprocessing
import resource
import traceback
from collections.abc import Callable, Iterable
from typing import Any

DEFAULT_MEMORY_BYTES = 16 << 30
DEFAULT_ITEM_TIMEOUT_S = 120.0
START_TIMEOUT_S = 300.0  # importing a peer (torch) and loading a model may take a while


def _child(conn, target: str, setup: tuple, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        module, name = target.split(":")
        state = getattr(importlib.import_module(module), name)(*setup)  # returns a per-item function
        conn.send({"ready": True})
    except BaseException as exc:
        conn.send({"ready": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
        return
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        try:
            result = state(item)
        except MemoryError:
            result = {"error": "crash: MemoryError (address-space limit)"}
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"[:300], "trace": traceback.format_exc()[-600:]}
        conn.send(result)


class Isolated:
    """`target` ("module:function") is called once in the child with `setup` and returns the
    function applied to each item; items and results must pickle."""

    def __init__(
        self,
        target: str,
        setup: tuple = (),
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        item_timeout_s: float = DEFAULT_ITEM_TIMEOUT_S,
    ) -> None:
        self.target, self.setup = target, setup
        self.memory_bytes, self.item_timeout_s = memory_bytes, item_timeout_s
        self.crashes = 0
        self.start_error: str | None = None
        self._process = None
        self._conn = None

    def start(self) -> bool:
        """Start the child (also done by the first item); False with `start_error` set if it fails."""
        context = multiprocessing.get_context("spawn")  # no inherited threads, model or locks
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child, self.target, self.setup, self.memory_bytes), daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self._stop()
            self.start_error = f"did not start within {START_TIMEOUT_S:g} s"
            return False
        try:
            hello = parent.recv()
        except EOFError:
            hello = {"ready": False, "error": f"crashed while starting (exit {self._process.exitcode})"}
        if not hello["ready"]:
            self._stop()
            self.start_error = hello["error"]
            return False
        return True

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        self._process = self._conn = None

    def __call__(self, item: Any) -> dict:
        if self._process is None and not self.start():
            return {"error": f"not started: {self.start_error}"}
        try:
            self._conn.send(item)
            if self._conn.poll(self.item_timeout_s):
                return self._conn.recv()
            why = f"crash: over the {self.item_timeout_s:g} s limit"
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._process.join(5)
            why = f"crash: the process died (exit code {self._process.exitcode})"
        self.crashes += 1
        self._stop()
        return {"error": why}

    def map(self, items: Iterable[Any], each: Callable[[], None] | None = None) -> list[dict]:
        results = []
        for item in items:
            results.append(self(item))
            if each is not None:
                each()
        return results

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        self._process = self._conn = None

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
