"""The timing loop the benchmarks share: calls per second of a function, after one warm-up call."""

from __future__ import annotations

import os
import time


def one_core() -> None:
    """Pin this process to one core, so that figures are per core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def rate(fn, seconds: float) -> tuple[float, int]:
    """(calls per second, calls) of ``fn`` over about ``seconds`` seconds."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 50 == 0 and time.perf_counter() - start >= seconds:
            break
    return n / (time.perf_counter() - start), n
