"""Who may start now: the worker limit, step groups, shared files and the rate limit.

Bookkeeping only — the reactor asks `blocked_reason` before it starts a step and tells `started`
and `stopped` as steps come and go. Every check is O(groups of the step + files of the step).
"""

from __future__ import annotations

from collections import Counter

from ..workstream.model import Workstream


class Capacity:
    """Concurrency limits of one run, and what currently uses them."""

    def __init__(self, workstream: Workstream, worker_limit: int) -> None:
        self.worker_limit = worker_limit
        self.rate_limit_delay = workstream.execution.rate_limit_delay
        self.serialize_files = workstream.execution.serialize_conflicting_files
        self._files = {s.id: s.files_scope for s in workstream.steps}
        self._groups: dict[str, list[tuple[str, int]]] = {}
        for group in workstream.step_groups:
            if group.limit is None:
                continue
            for step_id in group.steps:
                self._groups.setdefault(step_id, []).append((group.id, group.limit))
        self._group_running: Counter[str] = Counter()
        self._files_in_use: Counter[str] = Counter()
        self.running: set[str] = set()
        self.last_start_at = 0.0

    def full(self) -> bool:
        """Whether every worker is taken."""
        return len(self.running) >= self.worker_limit

    def next_start_at(self) -> float:
        """The earliest time the rate limit lets another step start."""
        return self.last_start_at + self.rate_limit_delay if self.rate_limit_delay > 0 else 0.0

    def step_blocked(self, step_id: str) -> bool:
        """Whether a group limit or a file shared with a running step holds `step_id` back."""
        for group_id, limit in self._groups.get(step_id, ()):
            if self._group_running[group_id] >= limit:
                return True
        return self.serialize_files and any(self._files_in_use[f] for f in self._files.get(step_id, ()))

    def started(self, step_id: str, at: float) -> None:
        """Count `step_id` as running."""
        if step_id in self.running:
            return
        self.running.add(step_id)
        self.last_start_at = max(self.last_start_at, at)
        for group_id, _ in self._groups.get(step_id, ()):
            self._group_running[group_id] += 1
        if self.serialize_files:
            self._files_in_use.update(self._files.get(step_id, ()))

    def stopped(self, step_id: str) -> None:
        """Stop counting `step_id` as running."""
        if step_id not in self.running:
            return
        self.running.discard(step_id)
        for group_id, _ in self._groups.get(step_id, ()):
            self._group_running[group_id] -= 1
        if self.serialize_files:
            self._files_in_use.subtract(self._files.get(step_id, ()))
