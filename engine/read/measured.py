"""Figures of a run measured from its own events (elapsed, one-after-another, time saved), and the
forecast of a run about to start from the durations earlier runs measured."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stepledger.events import RecordedEvent, StepFailed, StepPassed

if TYPE_CHECKING:
    from stepledger.engine.workstream.planning import Plan


@dataclass(frozen=True)
class MeasuredTimes:
    """Elapsed wall time of a run's attempts, and the time the same attempts take in sequence."""

    elapsed_s: float
    sequential_s: float

    @property
    def saved_fraction(self) -> float:
        """The share of the sequential time that parallelism saved (0 when nothing was saved)."""
        if self.sequential_s <= 0:
            return 0.0
        return max(0.0, 1.0 - self.elapsed_s / self.sequential_s)


MEASURED_TYPES = (
    StepPassed.type_name,
    StepFailed.type_name,
)  # the events `measured_times` reads (attempt outcomes)


def measured_times(events: Iterable[RecordedEvent]) -> MeasuredTimes:
    """Elapsed runs from the first attempt's start to the last one's end; sequential sums them all."""
    first: float | None = None
    last: float | None = None
    total = 0.0
    for event in events:
        if event.type in MEASURED_TYPES:
            started, finished = event.payload["started_at"], event.payload["finished_at"]
            first = started if first is None else min(first, started)
            last = finished if last is None else max(last, finished)
            total += max(0.0, finished - started)
    if first is None or last is None:
        return MeasuredTimes(0.0, 0.0)
    return MeasuredTimes(max(0.0, last - first), total)


@dataclass(frozen=True)
class Forecast:
    """What a run's plan says before it starts: whether steps will overlap, and how long it should
    take by the durations earlier runs measured (None when no earlier run measured a step)."""

    parallel: bool
    expected_s: float | None


def forecast(plan: Plan) -> Forecast:
    """The forecast of `plan` (the one `stepledger plan` prints, on the same measured durations)."""
    parallel = False
    if plan.worker_limit > 1:
        # Two steps overlap when one starts before every step started earlier has finished.
        busy_until = float("-inf")
        for start, finish in sorted((s.start, s.finish) for s in plan.schedule):
            if start < busy_until:
                parallel = True
                break
            busy_until = max(busy_until, finish)
    measured = plan.duration_sources.get("history", 0) > 0
    return Forecast(parallel, plan.parallel_time if measured else None)
