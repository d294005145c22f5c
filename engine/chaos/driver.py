"""One iteration: copy the working directory, `stepledger run` in the copy, kill it as planned,
`stepledger resume` until the run has ended (killing the first resume too, when planned), then
wait for every process the iteration started. The same drive without kills is the uninterrupted
run the iterations are compared with.

A run killed before it recorded itself has nothing to resume: it is started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stepledger.engine.paths import run_dir_of
from stepledger.events.state import RunState, fold
from stepledger.store.connect import open_store
from stepledger.store.errors import StoreError
from stepledger.store.port import EventStore

from . import processes
from .plan import ChaosPlan, IterationPlan, Kill
from .points import BY_NAME
from .scratch import copy_workdir, make_private
from .side_effects import SIDE_EFFECT_VARIABLE
from .stubs import write_stub

MAX_ROUNDS = 12  # processes per iteration: a run that needs more never ends
POLL = 0.02  # seconds between two looks at the log or the attempt logs (they offer no notification)
LOG_TAIL = 64 << 10  # bytes of an attempt log read when looking for an acceptance test's start


@dataclass
class IterationOutcome:
    """What one iteration did: its run, its kills and resumes, and where its evidence is."""

    folder: Path
    db_url: str
    run_id: str = ""
    kills: int = 0
    points_hit: list[str] = field(default_factory=list)
    resumes: int = 0
    seconds: float = 0.0
    error: str = ""  # a process ended as no run should (bad input, a crash, never finished)
    stragglers: list[int] = field(default_factory=list)  # processes still alive long after the end

    @property
    def side_log(self) -> Path:
        return self.folder / "side-effects.log"

    @property
    def work(self) -> Path:
        return self.folder / "work"


class _Log:
    """The iteration's event log, opened once it exists, read by the watches and at the end."""

    def __init__(self, url: str, before: set[str]) -> None:
        self.url = url
        self.before = before  # runs a shared log already held
        self.store: EventStore | None = None

    def _open(self) -> EventStore | None:
        if self.store is None:
            with contextlib.suppress(StoreError):
                self.store = open_store(self.url, create=False)
        return self.store

    def new_run(self) -> str:
        store = self._open()
        if store is None:
            return ""
        try:
            fresh = [r for r in store.run_ids() if r not in self.before]
        except StoreError:
            return ""
        return fresh[-1] if fresh else ""

    def has_event(self, run_id: str, type_name: str) -> bool:
        store = self._open()
        if store is None or not run_id:
            return False
        with contextlib.suppress(StoreError):
            return any(store.find_events(run_id=run_id, types=[type_name], limit=1))
        return False

    def state(self, run_id: str) -> RunState:
        store = self._open()
        assert store is not None
        return fold(run_id, store.read_run(run_id))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _existing_runs(url: str) -> set[str]:
    try:
        store = open_store(url, create=False)
    except StoreError:
        return set()
    try:
        return set(store.run_ids())
    finally:
        store.close()


def workstream_for(plan: ChaosPlan, folder: Path) -> Path:
    """The workstream file an iteration runs: the stub, the copy's own, or the original (read only)."""
    if plan.shell_stub:
        return write_stub(plan.file, plan.stub_durations, folder)
    if plan.workdir in plan.file.parents:
        return folder / "work" / plan.file.relative_to(plan.workdir)
    return plan.file


def drive(
    plan: ChaosPlan,
    folder: Path,
    iteration: IterationPlan | None,
    baseline_seconds: float,
    acceptance_lines: frozenset[str],
) -> IterationOutcome:
    """Run one iteration (`iteration` None: the uninterrupted run) in `folder`."""
    make_private(folder)
    copy_workdir(plan.workdir, folder)
    file = workstream_for(plan, folder)
    url = plan.db or f"sqlite:///{folder / 'ledger.db'}"
    out = IterationOutcome(folder, url)
    os.close(os.open(out.side_log, os.O_WRONLY | os.O_CREAT, 0o600))  # private before a step appends to it
    log = _Log(url, _existing_runs(url) if plan.db else set())
    kills = [iteration.first, iteration.resume_kill] if iteration else []
    tag = str(folder)
    began = time.monotonic()
    try:
        for round_no in range(1, MAX_ROUNDS + 1):
            kill = kills.pop(0) if kills else None
            args = ["resume", out.run_id] if out.run_id else ["run", str(file)]
            extra = {SIDE_EFFECT_VARIABLE: str(out.side_log)}
            if kill is not None and kill.kill_at:
                extra["STEPLEDGER_KILL_AT"] = kill.kill_at
            if kill is not None and kill.claim_delay:
                extra["STEPLEDGER_FAULT_CLAIM_DELAY"] = f"{kill.claim_delay:g}"
            output = folder / f"out.{round_no}.txt"
            proc = processes.start(args, out.work, processes.environment(tag, url, extra), output)
            code = _watch(proc, _trigger(kill, log, out, baseline_seconds, acceptance_lines))
            out.run_id = out.run_id or log.new_run()
            if args[0] == "resume":
                out.resumes += 1
            if code == -signal.SIGKILL:
                out.kills += 1
                out.points_hit.append(kill.point if kill else "unplanned")
                if out.run_id and log.state(out.run_id).status != "running":
                    break  # killed after the run had ended: nothing to resume
                continue
            if out.run_id and log.state(out.run_id).status != "running":
                break
            out.error = f"`stepledger {args[0]}` exited {code}: {_last_line(output)}"
            break
        else:
            out.error = f"the run had not ended after {MAX_ROUNDS} processes"
        out.seconds = time.monotonic() - began
    finally:
        out.stragglers = processes.await_tagged(tag)
        log.close()
    return out


def _trigger(
    kill: Kill | None,
    log: _Log,
    out: IterationOutcome,
    baseline_seconds: float,
    acceptance_lines: frozenset[str],
) -> Callable[[float], bool] | None:
    """When the driver itself kills the process (elapsed seconds -> now?), or None for no watch."""
    if kill is None:
        return None
    if kill.at_fraction is not None:
        at = kill.at_fraction * baseline_seconds
        return lambda elapsed: elapsed >= at
    how = BY_NAME[kill.point].how if kill.point in BY_NAME else "fault"
    if how == "watch_retry":

        def retry_scheduled(_elapsed: float) -> bool:
            out.run_id = out.run_id or log.new_run()
            return log.has_event(out.run_id, "step.retry_scheduled")

        return retry_scheduled
    if how == "watch_acceptance":

        def acceptance_started(_elapsed: float) -> bool:
            out.run_id = out.run_id or log.new_run()
            return bool(out.run_id) and _acceptance_running(
                run_dir_of(out.work, out.run_id), acceptance_lines
            )

        return acceptance_started
    return None


def _acceptance_running(run_dir: Path, lines: frozenset[str]) -> bool:
    """Whether an attempt log shows an acceptance test started (the worker logs `$ COMMAND` first)."""
    for path in run_dir.glob("*.log"):
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - LOG_TAIL))
                tail = f.read().decode(errors="replace")
        except OSError:
            continue
        if any(f"$ {line}\n" in tail for line in lines):
            return True
    return False


def _watch(proc: subprocess.Popen[bytes], trigger: Callable[[float], bool] | None) -> int:
    """Wait for `proc`; SIGKILL it once `trigger` holds. Its exit code."""
    if trigger is None:
        return proc.wait()
    began = time.monotonic()
    while proc.poll() is None:
        if trigger(time.monotonic() - began):
            processes.kill(proc)
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(POLL)
    return proc.wait()


def _last_line(output: Path) -> str:
    lines = output.read_text(errors="replace").strip().splitlines() if output.exists() else []
    return lines[-1][:300] if lines else "no output"
