"""Timing helper shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

import math
import time


def best_time(func, repeat=5):
    """Best wall time of ``repeat`` calls of ``func`` and the last value it returned."""
    best, value = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = func()
        best = min(best, time.perf_counter() - t0)
    return best, value
