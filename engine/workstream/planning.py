"""The plan of a run before it starts: waves, critical path and the time parallelism should save.

The plan simulates the reactor's policy: whenever a worker is free, start the ready step that comes
first in the file, within `max_workers`, every step group's limit and `rate_limit_delay`. A wave is
the set of steps the simulation starts at the same moment.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stepledger.engine.workstream.model import Workstream

from .graph import topo_indices

DEFAULT_DURATION = 1.0
_EPS = 1e-9


@dataclass(frozen=True)
class ScheduledStep:
    """When the simulation starts and finishes one step."""

    id: str
    start: float
    finish: float
    wave: int


@dataclass(frozen=True)
class Wave:
    """Steps that start together."""

    index: int  # from 1
    start: float
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What `stepledger plan` shows."""

    workstream_id: str
    step_count: int
    dependency_count: int
    worker_limit: int
    waves: tuple[Wave, ...]
    schedule: tuple[ScheduledStep, ...]
    critical_path: tuple[str, ...]
    critical_path_time: float
    parallel_time: float
    sequential_time: float
    durations: dict[str, float] = field(default_factory=dict)
    duration_sources: dict[str, int] = field(default_factory=dict)  # history / file / default: counts

    @property
    def time_unit(self) -> str:
        """ "s" when any duration is known, else "unit" (every step counted as one)."""
        known = self.duration_sources.get("history", 0) + self.duration_sources.get("file", 0)
        return "s" if known else "unit"

    @property
    def saving(self) -> float:
        """Fraction of the sequential time parallelism saves (0 when nothing to save)."""
        return 1 - self.parallel_time / self.sequential_time if self.sequential_time > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for `plan --json`."""
        return {
            "workstream_id": self.workstream_id,
            "steps": self.step_count,
            "dependencies": self.dependency_count,
            "worker_limit": self.worker_limit,
            "waves": [{"index": w.index, "start": w.start, "steps": list(w.steps)} for w in self.waves],
            "schedule": [vars(s) for s in self.schedule],
            "critical_path": list(self.critical_path),
            "critical_path_time": self.critical_path_time,
            "parallel_time": self.parallel_time,
            "sequential_time": self.sequential_time,
            "saving": self.saving,
            "time_unit": self.time_unit,
            "durations": self.durations,
            "duration_sources": self.duration_sources,
        }


def _durations(ws: Workstream, given: Mapping[str, float] | None) -> tuple[list[float], dict[str, int]]:
    given = given or {}
    out, sources = [], {"history": 0, "file": 0, "default": 0}
    for step in ws.steps:
        if step.id in given:
            out.append(float(given[step.id]))
            sources["history"] += 1
        elif step.estimated_duration is not None:
            out.append(float(step.estimated_duration))
            sources["file"] += 1
        else:
            out.append(DEFAULT_DURATION)
            sources["default"] += 1
    return out, sources


def _simulate(ws: Workstream, preds: list[list[int]], dur: list[float], workers: int) -> list[float]:
    """Start time of every step under the reactor's policy (event-driven, O((n + e) log n))."""
    n = len(ws.steps)
    index = {s.id: i for i, s in enumerate(ws.steps)}
    limits = [g.limit for g in ws.step_groups]
    groups_of: list[list[int]] = [[] for _ in range(n)]
    for g, group in enumerate(ws.step_groups):
        if limits[g] is not None:
            for step_id in dict.fromkeys(group.steps):
                if step_id in index:
                    groups_of[index[step_id]].append(g)
    in_group = [0] * len(limits)
    succ: list[list[int]] = [[] for _ in range(n)]
    waiting = [len(ps) for ps in preds]
    for v, ps in enumerate(preds):
        for u in ps:
            succ[u].append(v)
    ready = [v for v in range(n) if waiting[v] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    start = [0.0] * n
    delay = ws.execution.rate_limit_delay
    t, last_start, done = 0.0, None, 0
    while done < n:
        blocked, startable = [], False
        while ready and len(running) < workers:
            if delay and last_start is not None and t < last_start + delay - _EPS:
                startable = True
                break
            v = heapq.heappop(ready)
            if any(in_group[g] >= (limits[g] or 0) for g in groups_of[v]):
                blocked.append(v)
                continue
            start[v], last_start = t, t
            heapq.heappush(running, (t + dur[v], v))
            for g in groups_of[v]:
                in_group[g] += 1
        for v in blocked:
            heapq.heappush(ready, v)
        candidates = [running[0][0]] if running else []
        if startable and last_start is not None:
            candidates.append(last_start + delay)
        if not candidates:  # cannot happen for a DAG with limits >= 1; guard against a silent hang
            raise RuntimeError("plan simulation stalled")
        t = max(t, min(candidates))
        while running and running[0][0] <= t + _EPS:
            _, v = heapq.heappop(running)
            done += 1
            for g in groups_of[v]:
                in_group[g] -= 1
            for w in succ[v]:
                waiting[w] -= 1
                if waiting[w] == 0:
                    heapq.heappush(ready, w)
    return start


def _critical_path(preds: list[list[int]], order: list[int], dur: list[float]) -> tuple[list[int], float]:
    best = [0.0] * len(preds)
    via = [-1] * len(preds)
    for v in order:
        top = -1.0
        for u in preds[v]:
            if best[u] > top:
                top, via[v] = best[u], u
        best[v] = dur[v] + max(top, 0.0)
    if not best:
        return [], 0.0
    end = max(range(len(best)), key=lambda v: (best[v], -v))
    path = [end]
    while via[path[-1]] != -1:
        path.append(via[path[-1]])
    return path[::-1], best[end]


def plan(
    ws: Workstream, max_workers: int | None = None, durations: Mapping[str, float] | None = None
) -> Plan:
    """Plan `ws`: waves, critical path and expected times (durations: measured seconds by step id)."""
    execution = ws.execution if max_workers is None else replace(ws.execution, max_workers=max_workers)
    workers = max(1, execution.worker_limit)
    index = {s.id: i for i, s in enumerate(ws.steps)}
    preds = [[index[d] for d in s.requires if d in index] for s in ws.steps]
    order = topo_indices(preds)
    if order is None:
        raise ValueError("plan() needs an acyclic workstream; load_workstream rejects cycles")
    dur, sources = _durations(ws, durations)
    start = _simulate(ws, preds, dur, workers)
    starts = sorted({round(s, 9) for s in start})
    wave_of = {s: i + 1 for i, s in enumerate(starts)}
    members: dict[int, list[str]] = {i + 1: [] for i in range(len(starts))}
    schedule = []
    for v, step in enumerate(ws.steps):
        wave = wave_of[round(start[v], 9)]
        members[wave].append(step.id)
        schedule.append(ScheduledStep(step.id, start[v], start[v] + dur[v], wave))
    path, path_time = _critical_path(preds, order, dur)
    return Plan(
        workstream_id=ws.id,
        step_count=len(ws.steps),
        dependency_count=sum(len(p) for p in preds),
        worker_limit=workers,
        waves=tuple(Wave(i, s, tuple(members[i])) for s, i in wave_of.items()),
        schedule=tuple(schedule),
        critical_path=tuple(ws.steps[v].id for v in path),
        critical_path_time=path_time,
        parallel_time=max((s.finish for s in schedule), default=0.0),
        sequential_time=sum(dur),
        durations={s.id: d for s, d in zip(ws.steps, dur, strict=True)},
        duration_sources=sources,
    )
