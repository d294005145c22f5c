"""Step durations across runs: count, median, p95, max and trend; and the planner's estimates."""

from __future__ import annotations

import itertools
import math
from typing import Any

from stepledger.store.port import AuditQueries

from .filters import AuditFilter
from .queries import NO_FILTER
from .sources import WorkstreamCodes, passed_by_step

# A change of the median smaller than this is noise, not a trend.
TREND_THRESHOLD = 0.05
MIN_TREND_SAMPLES = 4


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


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
    older = _median(sorted(durations_in_time_order[: n // 2]))
    newer = _median(sorted(durations_in_time_order[n - n // 2 :]))
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


def _by_workstream(
    runs: list[str], positions: list[int], codes: WorkstreamCodes
) -> list[tuple[str, list[int]]]:
    """The indexes into `runs` of each workstream's samples, each in time (position, commit) order."""
    in_time = sorted(range(len(runs)), key=positions.__getitem__)
    numbers = list(map(codes.__getitem__, runs))  # C loops: this runs once per passed attempt
    if min(numbers) == max(numbers):  # the usual case: a step id belongs to one workstream
        return [(codes.names[numbers[0]] or "", in_time)]
    in_time.sort(key=numbers.__getitem__)  # stable: each workstream's samples stay in time order
    groups = itertools.groupby(in_time, key=numbers.__getitem__)
    return [(codes.names[n] or "", list(group)) for n, group in groups]


def durations(store: AuditQueries, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Per workstream and step, over passed attempts: count, median, p95, max, mean and trend."""
    with store.audit_reading() as reader:
        codes = WorkstreamCodes(reader)
        steps = passed_by_step(reader, flt)
    result = []
    for step_id, runs, positions, micros in steps:
        if runs:
            groups = _by_workstream(runs, positions, codes)
        else:  # the filter named the workstream
            groups = [(flt.workstream_id or "", sorted(range(len(positions)), key=positions.__getitem__))]
        for workstream_id, indexes in groups:
            # Whole microseconds until the end: sorting and picking ints, not a float per sample.
            in_time_order = list(map(micros.__getitem__, indexes))
            ordered = sorted(in_time_order)
            if ordered[0] < 0:  # a clock step backwards on the worker: count it as no time
                in_time_order = [max(0, us) for us in in_time_order]
                ordered = sorted(in_time_order)
            change = trend(in_time_order)
            result.append({
                "workstream_id": workstream_id,
                "step_id": step_id,
                "count": len(ordered),
                "median_s": _median(ordered) / 1e6,
                "p95_s": percentile(ordered, 0.95) / 1e6,
                "max_s": ordered[-1] / 1e6,
                "mean_s": sum(ordered) / len(ordered) / 1e6,
                "trend": change,
                "trend_text": trend_text(change),
            })  # fmt: skip
    result.sort(key=lambda r: (r["workstream_id"], r["step_id"]))
    return result


def historical_durations(store: AuditQueries, workstream_id: str) -> dict[str, float]:
    """The median duration of each step's passed attempts in earlier runs of `workstream_id`, by step id."""
    flt = AuditFilter(workstream_id=workstream_id)
    return {row["step_id"]: row["median_s"] for row in durations(store, flt)}
