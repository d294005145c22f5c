"""The logs `stepledger logs` prints: a run's orchestrator.log, or the output of each attempt of a
step — from the run folder on this machine, or, for an attempt a worker ran elsewhere (no file
here), from the database, where workers stream it while it runs (engine/fleet/log_stream.py). The
orchestrator.log of a run on workers is read from the database whenever it has it: its drivers
(one machine after another) stream their lines there.

Each log is a source a front end reads in chunks as it grows (never whole: a step's log can be far
larger than the memory a reader should take), waits on, and asks whether it has ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from stepledger.store.port import EventStore

from .status import log_files, run_state

CHUNK = 1 << 16


class LogSource(Protocol):
    """A log as a front end reads it."""

    name: str

    def chunks(self) -> Iterator[bytes]:
        """What the log gained since the last call (all of it, the first time)."""

    def wait(self, timeout: float) -> None:
        """Until the log may have grown, at most `timeout` seconds."""

    def ended(self) -> str | None:
        """None while more may come; else it has ended, with what to tell the reader ("": nothing)."""


class FileLog:
    """A log file on this machine; it ends when the run is no longer driven."""

    def __init__(self, path: Path, run_over: Callable[[], str | None], run_id: str) -> None:
        self.path = path
        self.name = path.name
        self._run_over = run_over
        self._run_id = run_id
        self._offset = 0

    def chunks(self) -> Iterator[bytes]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                while chunk := f.read(CHUNK):
                    self._offset += len(chunk)
                    yield chunk
        except FileNotFoundError:
            return

    def wait(self, timeout: float) -> None:
        # A file has no change notification we can rely on everywhere; a short poll is it.
        time.sleep(timeout)

    def ended(self) -> str | None:
        shown = self._run_over()
        if shown is None:
            return None
        # A run still `running` whose orchestrator is gone: nothing will be added until a resume.
        return f"run {self._run_id} is {shown}" if shown.startswith("running") else ""


class StepLogs:
    """The logs to print, in order (the last is the one followed); closes what they hold open."""

    def __init__(self, sources: list[LogSource], closers: list[Callable[[], None]]) -> None:
        self.sources = sources
        self._closers = closers

    def __enter__(self) -> StepLogs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers = []


def step_logs(
    store: EventStore,
    run_id: str,
    step_id: str | None,
    run_over: Callable[[], str | None],
    fleet_db: str | None,
) -> StepLogs:
    """The run's orchestrator.log, or a log per attempt of `step_id`: the local file when this
    machine has it, else (a run on workers, `fleet_db` its PostgreSQL URL) the database's copy;
    for a run on workers the database's copy of its orchestrator.log when there is one."""
    paths = log_files(store, run_id, step_id)
    run = run_state(store, run_id)
    remote: Any = None
    sources: list[LogSource] = []
    if step_id is None and fleet_db is not None and run.options.get("on_workers"):
        # A run on workers may be driven by several machines in turn, each writing an
        # orchestrator.log of its own: the database's copy has every driver's lines in order, the
        # file here at most this machine's. Read from there whenever the database has it.
        from ..fleet.reading import FleetLogs

        remote = FleetLogs(str(fleet_db))
        found = remote.run_log(run_id, run_over, lambda: _driven(store, run_id))
        if found is not None:
            return StepLogs([found], [remote.close])
        remote.close()
        remote = None
    for n, path in enumerate(paths, 1):
        on_fleet = step_id is not None and fleet_db is not None and run.options.get("on_workers")
        if path.exists() or not on_fleet:
            sources.append(FileLog(path, run_over, run_id))
            continue
        if remote is None:
            from ..fleet.reading import FleetLogs

            remote = FleetLogs(str(fleet_db))
        sources.append(remote.log((run_id, str(step_id), n)))
    return StepLogs(sources, [remote.close] if remote is not None else [])


def _driven(store: EventStore, run_id: str) -> bool:
    """Whether a live orchestrator holds the run's lease (it may write more lines)."""
    from ..session.liveness import live_lease

    return live_lease(store, run_id) is not None
