"""Workers for tests/test_bench.py's isolation test: run in a spawned child (ananke.bench.isolate)."""

import os
import threading


def worker():
    def one(item: str) -> dict:
        if item == "abort":
            os.abort()  # what a segfaulting peer looks like from outside
        if item == "hog":
            return {"size": len(bytearray(8 << 30))}  # past the address-space limit
        if item == "hang":
            threading.Event().wait()  # never returns
        return {"echo": item}

    return one
