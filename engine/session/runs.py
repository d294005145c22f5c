"""Starting and resuming runs: the functions the `run` and `resume` commands call.

The session owns what surrounds a reactor: the run's lease and heartbeat, the signals (stopping.py:
the first Ctrl-C drains, the second stops, a hang-up changes nothing), and the
worker pool — sized here once (`worker_limit`), started before the reactor decides, shut down after
it returns — and it starts the saga's rollback when the reactor says the run failed.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepledger.events import (
    RecordedEvent,
    RunCancelRequested,
    RunDrainRequested,
    RunFinished,
    RunResumed,
    RunStarted,
    StreamWrite,
    run_stream,
)
from stepledger.events.state import RunState, fold
from stepledger.store.errors import StoreError
from stepledger.store.port import EventStore

from ..errors import RunInUse, StepledgerError
from ..execution.lock_sweep import sweep_lock_dirs
from ..paths import hostname, run_dir_of
from ..run.reactor import WAKE, Reactor
from ..run.reporting import FanOut, Reporter, RunLogReporter
from ..workstream.model import Workstream, worker_limit
from ..workstream.profiles import load_profiles
from ..worktrees.isolation import check_isolation
from .leases import LeasedStore, LeaseLost, RunLease, heartbeat
from .liveness import is_stepledger
from .prerun import check_run_inputs, file_hash, load_run, new_run_id
from .stopping import DrainingDispatcher, Stopping, pending_drain


@dataclass(frozen=True)
class RunResult:
    """How a run (or a resumed run) ended."""

    run_id: str
    outcome: str
    run: RunState


def _default_pool(size: int, results: queue.SimpleQueue[Any]) -> Any:
    from ..execution.pool import WorkerPool

    return WorkerPool(size, results)


def start_run(
    store: EventStore,
    workstream: Workstream,
    *,
    workdir: str | Path | None = None,
    max_workers: int | None = None,
    reporter: Reporter | None = None,
    run_id: str | None = None,
    pool_factory: Callable[[int, queue.SimpleQueue[Any]], Any] = _default_pool,
    merge_into: str | None = None,
    on_workers: bool = False,
    takeover: bool = True,
    drive_queue: str | None = None,
) -> RunResult:
    """Record a new run of `workstream` and drive it to its end (`merge_into`: docs/worktrees.md).

    `on_workers`: the pool is the fleet's (docs/workers.md); recorded, so a resume uses it too.
    With `takeover` too, the run is recorded `worker_driven`: should this process die, a worker
    serving `drive_queue` (None: the default queue) takes it over, as it does a submitted run; this
    process drives it while it lives (its lease).
    """
    workdir = Path(workdir or os.getcwd()).resolve()
    run_id = run_id or new_run_id()
    options = {
        **({"max_workers": max_workers} if max_workers else {}),
        **({"merge_into": merge_into} if merge_into else {}),
        **({"on_workers": True} if on_workers else {}),
        **(_fleet_takeover(drive_queue) if on_workers and takeover else {}),
    }
    started = _run_started(workstream, workdir, options)
    check_run_inputs(workstream, workdir, max_workers)  # bad input records nothing
    check_isolation(workstream, workdir, run_id, merge_into)
    lease = RunLease(store, run_id)
    take_lease(store, lease)
    try:
        recorded = store.append([StreamWrite(run_id, run_stream(run_id), 0, [started])])
        run = fold(run_id, recorded)
        return _drive(store, workstream, run, max_workers, reporter, recorded, pool_factory, lease)
    finally:
        lease.release()


def _fleet_takeover(drive_queue: str | None) -> dict[str, Any]:
    """The options that hand a run to the fleet whenever nobody drives it (engine/fleet/drive.py):
    its drive jobs go to the workers serving `drive_queue` (None: the default queue), as those of
    a `submit --queue`."""
    from ..fleet.settings import DEFAULT_QUEUE

    return {"worker_driven": True, "drive_queue": drive_queue or DEFAULT_QUEUE}


def record_run(
    store: EventStore, workstream: Workstream, *, workdir: str | Path, run_id: str, options: dict[str, Any]
) -> None:
    """Record a new run without driving it: its `run.started` alone (`stepledger submit`: a worker
    drives it, docs/workers.md). The caller checked its inputs; nothing else can write a run that
    does not exist yet, so no lease is needed (the append's expected version 0 refuses a second)."""
    started = _run_started(workstream, Path(workdir).resolve(), options)
    store.append([StreamWrite(run_id, run_stream(run_id), 0, [started])])


def _run_started(workstream: Workstream, workdir: Path, options: dict[str, Any]) -> RunStarted:
    # The serialisation module alone: the workstream package (YAML, rules, planning, drawing)
    # is not needed to record or resume a run, and importing it is a noticeable part of start-up.
    from ..workstream.env_values import recorded_workstream
    from ..workstream.serialization import workstream_to_dict

    source = workstream.source_path
    return RunStarted(
        workstream_id=workstream.id,
        workstream=recorded_workstream(workstream_to_dict(workstream)),
        workstream_hash=file_hash(source) if source and Path(source).is_file() else "",
        source_path=str(Path(source).resolve()) if source else "",
        workdir=str(workdir),
        options=options,
        host=hostname(),
        pid=os.getpid(),
        user=user_name(),
        params=dict(workstream.params),
    )


def resume_run(
    store: EventStore,
    run_id: str,
    *,
    use_current_file: bool = False,
    max_workers: int | None = None,
    reporter: Reporter | None = None,
    pool_factory: Callable[[int, queue.SimpleQueue[Any]], Any] | None = None,
    run: RunState | None = None,
    owner: str | None = None,
    built: tuple[dict[str, Any], Workstream] | None = None,
    takeover: bool = False,
) -> RunResult:
    """Continue `run_id` with a new reactor, from what its log says (`run`: a fold the caller made).

    `owner`: the lease token of a lease the caller took already (a worker's drive, docs/workers.md).
    `built`: a recorded workstream (as `run` holds it) and the Workstream the caller built of it,
    used if the log still records that one once the lease is taken (resume_pool.py).
    `takeover`: a worker takes over a run nobody drives (engine/fleet/driver.py), which is no
    decision to go on, as a `resume` typed by someone is: a run that ended meanwhile is left as it
    is (outcome "not driven: it has ended"), and a pending cancel stands, as does a pending drain
    (the first Ctrl-C of a driver that died before the drain ended: this one finishes it).
    """
    if run is None and store.stream_version(run_stream(run_id)) == 0:
        load_run(store, run_id)  # raises RunNotFound
    lease = RunLease(store, run_id, owner=owner)
    take_lease(store, lease)  # before anything is appended: a second resume must change nothing
    try:
        pools = pool_factory or _default_pool
        return _resume(
            store, run_id, lease, use_current_file, max_workers, reporter, pools, run, built, takeover
        )
    finally:
        lease.release()


def _resume(
    store: EventStore,
    run_id: str,
    lease: RunLease,
    use_current_file: bool,
    max_workers: int | None,
    reporter: Reporter | None,
    pool_factory: Callable[[int, queue.SimpleQueue[Any]], Any],
    run: RunState | None,
    built: tuple[dict[str, Any], Workstream] | None,
    takeover: bool,
) -> RunResult:
    from ..workstream.env_values import recorded_workstream, resolved_workstream
    from ..workstream.serialization import workstream_from_dict, workstream_to_dict

    # Read under the lease, so no other reactor appends to it now; a caller's earlier fold only
    # needs what was appended since (folding a long log twice would double resume's start-up).
    if run is None:
        run = load_run(store, run_id)
    else:
        run = fold(run_id, store.read_run(run_id, after_position=run.last_position), run)
    if takeover and run.status != "running":
        # Ended since the worker looked (a `cancel` with nothing running, which needs no driver):
        # a deliberate stop is never undone by the fleet.
        return RunResult(run_id, "not driven: it has ended", run)
    if use_current_file:
        from ..workstream.loading import load_with_warnings

        # The run keeps the parameters it was started with (they are in the recorded workstream).
        # On the fleet a step's ${env.NAME} values are the workers' (engine/fleet/attempt_env.py):
        # this process need not have them, as `run --on-workers` need not.
        workstream, _ = load_with_warnings(
            run.source_path,
            params=run.workstream.get("params") or {},
            env_on_workers=bool(run.options.get("on_workers")),
        )
        resumed = RunResumed(
            host=hostname(),
            pid=os.getpid(),
            user=user_name(),
            workstream=recorded_workstream(workstream_to_dict(workstream)),
            workstream_hash=file_hash(run.source_path),
        )
    elif built is not None and built[0] is run.workstream:
        workstream = built[1]
        resumed = RunResumed(host=hostname(), pid=os.getpid(), user=user_name())
    else:
        # The step env values recorded as templates are resolved in this process's environment; on
        # the fleet, by the worker that runs each attempt (engine/fleet/attempt_env.py), in its own.
        on_fleet = run.options.get("on_workers")
        as_run = run.workstream if on_fleet else resolved_workstream(run.workstream, os.environ, run_id)
        workstream = workstream_from_dict(as_run)
        resumed = RunResumed(host=hostname(), pid=os.getpid(), user=user_name())
    check_run_inputs(workstream, run.workdir, max_workers)
    check_isolation(workstream, run.workdir, run_id, run.options.get("merge_into"))
    events: list[Any] = [resumed]
    drain: RunDrainRequested | None = None
    if takeover:
        # A cancel or a drain asked of a driver that is gone stands (a typed resume clears them,
        # as for any run), asked again with the takeover's run.resumed, as its own.
        asked, drain = _asked_again(store.read_stream(run_stream(run_id)), run)
        events.extend(asked)
    recorded = store.append([StreamWrite(run_id, run_stream(run_id), run.version, events)])
    run = fold(run_id, recorded, run)
    options = run.options.get("max_workers")
    return _drive(
        store, workstream, run, max_workers or options, reporter, recorded, pool_factory, lease, drain
    )


def _asked_again(
    run_events: list[RecordedEvent], run: RunState
) -> tuple[list[RunCancelRequested | RunDrainRequested], RunDrainRequested | None]:
    """The run's pending cancel and drain requests (its own events: a handful), asked again by
    whoever asked them; and the drain among them, if one is pending."""
    asked: list[RunCancelRequested | RunDrainRequested] = []
    if run.cancel_requested:
        cancels = [e for e in run_events if e.type == RunCancelRequested.type_name]
        by = str(cancels[-1].payload.get("by", "")) if cancels else ""
        asked.append(RunCancelRequested(by=by or user_name(), reason=run.cancel_reason))
    pending = pending_drain(run_events)
    if pending is None:
        return asked, None
    drain = RunDrainRequested(
        by=str(pending.payload.get("by") or "?"), reason=str(pending.payload.get("reason", ""))
    )
    return [*asked, drain], drain


def take_lease(store: EventStore, lease: RunLease) -> None:
    """Take the run's lease, or raise RunInUse naming the live orchestrator that holds it."""
    if lease.acquire():
        return
    held = store.lease_holder(lease.run_id)
    if held is not None and held.host == hostname() and not is_stepledger(held.pid):
        # Its holder died on this host (kill -9, a crash): no need to wait for the lease to run out.
        store.release_lease(lease.run_id, held.owner)
        if lease.acquire():
            return
        held = store.lease_holder(lease.run_id)
    who = f"pid {held.pid} on host {held.host}" if held else "another orchestrator"
    until = time.strftime("%H:%M:%S", time.localtime(held.expires_at)) if held else "?"
    raise RunInUse(
        f"run {lease.run_id} is being driven by the orchestrator {who} (lease renewed until {until}); "
        f"wait for it to finish, or stop it with `stepledger cancel {lease.run_id}`"
    )


def _drive(
    store: EventStore,
    workstream: Workstream,
    run: RunState,
    max_workers: int | None,
    reporter: Reporter | None,
    first_events: list[RecordedEvent],
    pool_factory: Callable[[int, queue.SimpleQueue[Any]], Any],
    lease: RunLease,
    drain: RunDrainRequested | None = None,
) -> RunResult:
    """Drive the run with a reactor on a new pool; `drain`: a drain its previous driver had begun
    (recorded again in `first_events`), which this one finishes."""
    run_dir = run_dir_of(run.workdir, run.run_id)
    run_log = RunLogReporter(run_dir / "orchestrator.log")
    fan = FanOut(run_log, reporter) if reporter else FanOut(run_log)
    fan.events(run, first_events)
    workers = worker_limit(workstream, max_workers)
    pool = DrainingDispatcher(pool_factory(workers, queue.SimpleQueue()), fan.note, by=user_name())
    if drain is not None:
        pool.draining = pool.drain_recorded = True
        why = f"{drain.reason} by {drain.by}" if drain.reason else f"asked by {drain.by}"
        fan.note(
            f"the run's previous driver was draining it ({why}): this driver finishes the drain — "
            f"it waits for the running steps and starts nothing new (`stepledger resume {run.run_id}` "
            f"goes on with the rest)"
        )
    reactor = Reactor(
        LeasedStore(store, lease, on_outage=fan.note),  # a proxy: appends check the lease, outages wait
        workstream,
        run,
        pool=pool,
        workers=workers,
        run_dir=run_dir,
        profiles=load_profiles(run.workdir),
        reporter=fan,
    )

    def lost() -> None:
        # Stop driving: the reactor kills its attempts; its next append raises LeaseLost.
        reactor.stop_requested = True
        reactor.results.put(WAKE)

    pool.reactor = reactor
    stopping = Stopping(reactor, pool)
    try:
        with (
            stopping.installed(),
            heartbeat(lease, lost, lambda: reactor.results.put(WAKE), lambda: reactor.ledger.seen_position),
        ):
            outcome = drive(reactor, stopping)
        pool.say_pending()
        if lease.lost_reason:
            lease.check()  # raises: a reactor that lost its lease never reports the run as ended by it
    except LeaseLost:
        if not run.options.get("worker_driven"):
            raise
        # Not `resume`: the fleet takes a run driven by workers over by itself (docs/workers.md).
        why = lease.lost_reason or "its lease was lost"
        raise LeaseLost(
            f"stopped driving run {run.run_id}: {why}; a worker of the fleet drives it on "
            f"(`stepledger status {run.run_id}`)"
        ) from None
    except KeyboardInterrupt:
        # A third Ctrl-C (stopping.py) leaves before the run's end is recorded: a run on one machine
        # waits for `resume` then, and so must a run the fleet would otherwise take over.
        if run.options.get("worker_driven"):
            _end_interrupted(store, lease, run.run_id)
        raise
    finally:
        run_log.close()
    if outcome != "interrupted":
        _remove_lock_dir(run_dir)
        sweep_lock_dirs()  # and those that runs whose directory is gone left behind
    return RunResult(run.run_id, outcome, reactor.run)


def _end_interrupted(store: EventStore, lease: RunLease, run_id: str) -> None:
    """Record the run interrupted, if it is still running and the lease still ours (best effort:
    the process is on its way out). Attempts the log says are running stay so: `resume` settles
    them, as after any interrupted run on workers whose attempts did not report in time."""
    try:
        lease.check()
        left = load_run(store, run_id)
        if left.status == "running":
            finished = RunFinished(outcome="interrupted")
            store.append([StreamWrite(run_id, run_stream(run_id), left.version, [finished])])
    except (StepledgerError, StoreError, KeyboardInterrupt):
        pass  # as a crash: the fleet takes the run over once the lease has run out


def drive(reactor: Reactor, stopping: Stopping | None = None) -> str:
    """Drive a run to its end on the reactor's pool, roll it back if it failed, record how it ended."""
    reactor.pool.start()
    try:
        outcome = reactor.decide_until_done()
        if outcome == "failed" and reactor.ws.saga.enabled and stopping and stopping.pool.draining:
            # Ctrl-C asked to start nothing new: the rollback is left to `resume`, like the steps.
            reactor.stop_requested = True
        elif outcome == "failed" and reactor.ws.saga.enabled:
            if stopping is not None:
                stopping.rolling_back = True
            from ..saga.rollback import roll_back

            # Compensations run on the same pool and are recorded in the same log; a crash
            # during the rollback is resumed like any other (the log says what was undone).
            outcome = roll_back(reactor)
    except LeaseLost:
        # Another orchestrator holds the run now. The attempts a fleet runs for it are that one's
        # to await and settle: stopped here, they would be recorded interrupted and run again.
        reactor.pool.abandon()
        raise
    finally:
        reactor.pool.shutdown(kill_running=True, reason="interrupted")
    if stopping is not None:
        stopping.pool.drain_unrecorded()  # a Ctrl-C after the loop's last wait: finish commits it
    return reactor.finish(outcome)


def _remove_lock_dir(run_dir: Path) -> None:
    """Remove a finished run's lock files from tmpfs (no attempt of it can be alive any more)."""
    from ..execution.files import lock_dir

    folder = lock_dir(str(run_dir))
    if folder != str(run_dir):
        shutil.rmtree(folder, ignore_errors=True)


def user_name() -> str:
    """Who runs this process, as events record it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
