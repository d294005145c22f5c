"""`stepledger submit`: record a run for the fleet to drive, and hand it to the workers.

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

from stepledger.store.port import EventStore

from ..errors import UserInputError
from ..session.prerun import check_max_workers, check_run_inputs
from ..session.runs import new_run_id, record_run
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
    info = conninfo(db_url)
    with psycopg.connect(info, autocommit=True) as conn:
        schema.install(conn)
    app = jobs.make_app(info)
    app.open()
    try:
        defer_drive(app, run_id, queue)
    finally:
        app.close()
    return run_id
