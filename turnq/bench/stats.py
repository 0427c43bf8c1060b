"""Small helpers of the benchmark: timing, medians, formatting."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

clock = time.perf_counter


def timed(action: Callable[[], Any]) -> float:
    """Seconds one call takes."""
    start = clock()
    action()
    return clock() - start


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def ms(value: float) -> str:
    return f"{value:8.1f} ms" if value >= 10 else f"{value:8.2f} ms"


def ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("inf")
