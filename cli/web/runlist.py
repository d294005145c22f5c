"""The runs page's rows, kept in memory and kept current by the live thread.

Reading the run_summaries view for every page would read every run of a big log each time (it
computes each run's status from its events). The server reads it once, then the thread that
follows the log re-reads only the runs a batch of new events touched, so a page is a filter and a
slice of rows in memory, whatever the log's size. Reads and updates take one lock, so a row read
earlier never overwrites one read later.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepledger.engine.api import Stepledger


MAX_NEWER = 200  # new runs a page that was opened long ago is sent at most


class RunList:
    """run_summaries rows by run, and their order by start."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] | None = None
        self._order: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._rows is not None

    def rows(self, api: Stepledger) -> list[dict[str, Any]]:
        """Every run's row, oldest first (read from the log the first time)."""
        with self._lock:
            if self._rows is None:
                self._rows = {row["run_id"]: row for row in api.run_summaries()}
                self._order = []
            if not self._order:
                self._order = sorted(self._rows.values(), key=lambda r: (r["started_at"], r["run_id"]))
            return self._order

    def snapshot(self, api: Stepledger, shown: list[str]) -> list[dict[str, Any]]:
        """The rows of the runs `shown` (ids), and of every run that started after the newest of them."""
        order = self.rows(api)
        with self._lock:
            assert self._rows is not None
            known = [self._rows[run_id] for run_id in shown if run_id in self._rows]
            newest = max((r["started_at"] for r in known), default=None)
            newer = [r for r in order if newest is not None and r["started_at"] > newest]
            return known + newer[-MAX_NEWER:]

    def update(self, api: Stepledger, run_ids: set[str]) -> list[dict[str, Any]]:
        """Read the rows of `run_ids` again; return them (in id order)."""
        with self._lock:
            fresh = [api.run_summary(run_id) for run_id in sorted(run_ids)]
            if self._rows is not None:
                self._rows.update((row["run_id"], row) for row in fresh)
                self._order = []  # sorted again on the next read
            return fresh

    def forget(self) -> None:
        """Read everything again next time (after the live thread missed a batch)."""
        with self._lock:
            self._rows = None
            self._order = []
