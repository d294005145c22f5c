"""`stepledger submit`: record a run for the fleet to drive, and hand it to the workers; and
`resume --submit`: hand a stopped run of the fleet back to it.

The run is checked as `run --on-workers` checks it (bad input records nothing), then recorded: its
`run.started` alone, marked `on_workers` (its attempts go to workers) and `worker_driven` (a worker
drives it, not the process that recorded it), with the queue whose workers drive it. Then a drive
job is enqueued (drive.py).

The event and the job are not one transaction (the event is the store's, the job Procrastinate's),
and need not be: a run recorded whose job was never enqueued (this process died between the two)
is running with no lease and no drive job waiting, which is exactly what every worker's watch
looks for; it enqueues the drive. The job's queueing lock (`drive/RUN`) makes the two enqueues one.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from stepledger.events import RunResumed, StreamWrite, run_stream
from stepledger.events.state import fold
from stepledger.store.port import EventStore

from ..errors import UserInputError
from ..paths import hostname
from ..session.leases import RunLease
from ..session.prerun import check_max_workers, check_run_inputs, load_run
from ..session.runs import new_run_id, record_run, take_lease, user_name
from ..workstream.model import Workstream
from . import jobs, schema
from .drive import defer_drive
from .settings import DEFAULT_QUEUE, check_settings, conninfo
from .workstream import check_fleet_run


def submit_run(
    store: EventStore,
    db_url: str,
    workstream: Workstream,
    workdir: Path,
    max_workers: int | None = None,
    queue: str | None = None,
) -> str:
    """Record a run of `workstream` driven by workers and enqueue its drive; its id."""
    queue = DEFAULT_QUEUE if queue is None else queue
    if not queue.strip():
        raise UserInputError(
            "--queue: give a queue name (workers serve the queues given to them with --queue)"
        )
    check_settings()
    check_max_workers(max_workers)
    check_fleet_run(workstream, None)
    check_run_inputs(workstream, workdir, max_workers)
    run_id = new_run_id()
    options = {
        **({"max_workers": max_workers} if max_workers else {}),
        "on_workers": True,
        "worker_driven": True,
        "drive_queue": queue,
    }
    record_run(store, workstream, workdir=workdir, run_id=run_id, options=options)
    _enqueue_drive(db_url, run_id, queue)
    return run_id


def _enqueue_drive(db_url: str, run_id: str, queue: str) -> bool:
    """Enqueue a drive of the recorded run `run_id` (the fleet's tables made first if this is the
    database's first fleet run); False if one was waiting already."""
    info = conninfo(db_url)
    with psycopg.connect(info, autocommit=True) as conn:
        schema.install(conn)
    app = jobs.make_app(info)
    app.open()
    try:
        return defer_drive(app, run_id, queue)
    finally:
        app.close()


def hand_to_fleet(store: EventStore, db_url: str, run_id: str) -> tuple[str, bool]:
    """Hand the stopped run `run_id` of the fleet back to it: (the queue whose workers drive it,
    whether a drive job was enqueued; False: one waited already).

    Under the run's lease (RunInUse while a live orchestrator drives it), a run.resumed marked
    `to_fleet` makes the run running again with nobody driving it, then a drive job is enqueued.
    Not one transaction, and it need not be: a run so recorded whose job was never enqueued is, for
    a run driven by workers, what every worker's watch looks for (as after `submit`). A worker's
    driver then resumes it as a takeover: attempts still running are waited for, none is started
    twice, a cancel asked since stands.
    """
    run = load_run(store, run_id)
    if not run.options.get("on_workers"):
        raise UserInputError(
            f"run {run_id} ran on a pool of its own machine, not on workers: resume it there with "
            f"`stepledger resume {run_id}`"
        )
    queue = str(run.options.get("drive_queue") or DEFAULT_QUEUE)
    check_settings()
    lease = RunLease(store, run_id)
    take_lease(store, lease)  # before anything is appended: a live driver keeps the run
    try:
        run = fold(run_id, store.read_run(run_id, after_position=run.last_position), run)
        if run.status == "passed":
            raise UserInputError(f"run {run_id} has passed: there is nothing left to resume")
        handed = RunResumed(host=hostname(), pid=0, user=user_name(), to_fleet=True)
        store.append([StreamWrite(run_id, run_stream(run_id), run.version, [handed])])
    finally:
        lease.release()
    return queue, _enqueue_drive(db_url, run_id, queue)
