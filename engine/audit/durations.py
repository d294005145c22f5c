"""Step durations across runs: count, median, p95, max and trend; and the planner's estimates."""

from __future__ import annotations

import math
import statistics
from typing import Any

from stepledger.store.port import EventStore

from .filters import AuditFilter
from .queries import NO_FILTER, passed_durations

# A change of the median smaller than this is noise, not a trend.
TREND_THRESHOLD = 0.05
MIN_TREND_SAMPLES = 4


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The `fraction` percentile of ascending `sorted_values`, interpolated like percentile_cont."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * fraction
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def trend(durations_in_time_order: list[float]) -> float | None:
    """The relative change of the median from the older half to the newer half (None: too few samples)."""
    n = len(durations_in_time_order)
    if n < MIN_TREND_SAMPLES:
        return None
    older = statistics.median(durations_in_time_order[: n // 2])
    newer = statistics.median(durations_in_time_order[n - n // 2 :])
    if older <= 0:
        return None
    return newer / older - 1.0


def trend_text(change: float | None) -> str:
    """`↑ 12%`, `↓ 8%`, `→` (steady) or `` (too few samples)."""
    if change is None:
        return ""
    if abs(change) < TREND_THRESHOLD:
        return "→"
    return f"{'↑' if change > 0 else '↓'} {abs(change) * 100:.0f}%"


def durations(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Per workstream and step, over passed attempts: count, median, p95, max, mean and trend."""
    result = []
    for workstream_id, step_id, samples in sorted(passed_durations(store, flt), key=lambda g: g[:2]):
        if not samples:
            continue
        in_time_order = [max(0.0, duration) for _, duration in sorted(samples)]
        ordered = sorted(in_time_order)
        change = trend(in_time_order)
        result.append({
            "workstream_id": workstream_id or "",
            "step_id": step_id,
            "count": len(ordered),
            "median_s": statistics.median(ordered),
            "p95_s": percentile(ordered, 0.95),
            "max_s": ordered[-1],
            "mean_s": statistics.fmean(ordered),
            "trend": change,
            "trend_text": trend_text(change),
        })  # fmt: skip
    return result


def historical_durations(store: EventStore, workstream_id: str) -> dict[str, float]:
    """The median duration of each step's passed attempts in earlier runs of `workstream_id`, by step id."""
    flt = AuditFilter(workstream_id=workstream_id)
    return {row["step_id"]: row["median_s"] for row in durations(store, flt)}
