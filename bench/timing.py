"""Shared timing for the benchmarks: interleaved repeats, medians, no assertions.

Machines here are shared and noisy, so paths take turns within each repeat (noise hits
them alike) and only medians and ratios to a baseline from the same run are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def rate(func: Callable[[], object], seconds: float) -> Callable[[], float]:
    """A timer for ``func``: loop count fixed once, each call returns seconds per op."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / elapsed))

    def run() -> float:
        start = time.perf_counter()
        for _ in range(loops):
            func()
        return (time.perf_counter() - start) / loops

    return run


def median_seconds(
    paths: dict[str, Callable[[], object]], *, repeats: int, seconds: float
) -> dict[str, float]:
    """Median seconds per operation of each path, the paths interleaved per repeat."""
    timers = {name: rate(func, seconds) for name, func in paths.items()}
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, timer in timers.items():
            samples[name].append(timer())
    return {name: statistics.median(values) for name, values in samples.items()}


def print_table(medians: dict[str, float], baseline: str) -> None:
    """One line per path: ops/s, microseconds per op, ratio to ``baseline``."""
    base = medians[baseline]
    print(f"{'path':<44} {'ops/s':>10} {'us/op':>8} {'ratio':>6}")
    for name, secs in medians.items():
        print(f"{name:<44} {1 / secs:>10,.0f} {secs * 1e6:>8.2f} {base / secs:>6.3f}")
