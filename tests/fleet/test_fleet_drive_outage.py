"""A worker that drives runs rides a database outage out with its drives (engine/fleet/drive.py, whose
Procrastinate worker goes through engine/fleet/ride_out.py as the attempts' one does).

On a private throw-away cluster (never the server in use): one worker, with attempt slots and drive
slots, drives a submitted run whose steps it also runs; the cluster is stopped (`-m immediate`)
and started again in the middle of it. The worker must not stop, the run must complete with no
step run twice and a log that `replay --verify` accepts, and the worker must go on taking drive
jobs as they are enqueued.

That last point is what a Procrastinate worker left to itself loses on a short outage, without
stopping: its listener dies with its connection, unnoticed (Procrastinate watches its worker's side
tasks only until the periodic deferrer, which has nothing to defer, returns), and it takes jobs
only at its poll, every five seconds. A poll cannot be seen from outside, but a job taken by one
says when it was: a drive job enqueued just after another was taken waits most of five seconds for
the next. Through a listener it is taken at once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fleetkit import (
    Fleet,
    check_evidence,
    check_no_overlap,
    check_replay,
    cli,
    driving_host,
    evidence_task,
    query,
    run_status,
    wait_for,
    workstream,
)
from private_cluster import PrivateCluster

pytestmark = pytest.mark.postgres

# As in test_fleet_outage.py: the outage ends with the last heartbeat less than the stall timeout
# old, so a worker whose heartbeat is written again promptly is not taken for dead. A lease longer
# than the outage: a driver that gives its run up during one hands it to the fleet, a takeover this
# test is not about.
SETTINGS = {"STEPLEDGER_FLEET_HEARTBEAT": "1", "STEPLEDGER_FLEET_STALL_TIMEOUT": "6",
            "STEPLEDGER_LEASE_SECONDS": "15"}  # fmt: skip
OUTAGE = 3.2  # seconds the database is away: the scenario's length, not a wait for something
PROMPTLY = 2.0  # seconds: a drive job's wait through a listener (tenths), not through a poll (five)


def _submit(db: str, ws: Path) -> str:
    done = cli(db, "submit", str(ws), cwd=ws.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_a_worker_driving_a_run_rides_an_outage_out_and_drives_on(
    private_cluster: PrivateCluster, fleet_on_private_cluster: Fleet, tmp_path: Path
) -> None:
    fleet = fleet_on_private_cluster
    db = private_cluster.url
    fleet.start("w1", "--drive", "2", env_extra=SETTINGS)
    side = tmp_path / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    ids = [f"s{i}" for i in range(6)]
    steps = [{"id": sid, "tasks": [evidence_task(side, 0.4)], "depends_on": ids[n - 1 : n]}
             for n, sid in enumerate(ids)]  # fmt: skip
    run_id = _submit(db, workstream(drv / "ws.json", steps))
    wait_for(lambda: side.exists() and side.read_text().count("end") >= 2, "two steps to pass")
    assert driving_host(db, run_id) == "w1"

    private_cluster.pg_ctl("stop", "-m", "immediate")
    time.sleep(OUTAGE)
    private_cluster.pg_ctl("start")

    worker = fleet.workers["w1"]

    def up(condition: Callable[[], Any]) -> Callable[[], Any]:
        """`condition`, with w1 still running: a worker that stopped fails the wait at once."""

        def checked() -> Any:
            assert worker.poll() is None, f"w1 stopped (exit {worker.returncode}):\n{fleet.output('w1')}"
            return condition()

        return checked

    def ended() -> str:
        status = run_status(db, run_id)
        return status if status not in ("", "running") else ""

    assert wait_for(up(ended), "the run to end", timeout=60) == "passed"
    check_evidence(side, ids)  # every step once
    check_no_overlap(db, run_id)
    check_replay(db, run_id, drv)
    # Both of its Procrastinate workers' rows are beaten, the drives' too (a row left silent has
    # its running drives failed as stalled by a watch, and is pruned by the next worker's start).
    beaten = ("SELECT count(*) FILTER (WHERE last_heartbeat > now() - interval '3 seconds'), count(*)"
              " FROM procrastinate_workers")  # fmt: skip
    wait_for(up(lambda: query(db, beaten) == [(2, 2)]), "both rows of w1 to be beaten", timeout=10)

    # It drives on, taking drive jobs as they come: one run, then another as soon as the first is
    # taken (see above: through a poll the second would wait most of five seconds).
    def driving(run: str) -> Callable[[], bool]:
        return up(lambda: f"driving run {run}" in fleet.output("w1"))

    one = workstream(drv / "one.json", [{"id": "t", "tasks": ["true"]}])
    first = _submit(db, one)
    wait_for(driving(first), "w1 to drive the first run", timeout=15)
    second = _submit(db, one)
    enqueued = time.monotonic()
    wait_for(driving(second), "w1 to drive the second run", timeout=15)
    waited = time.monotonic() - enqueued
    assert waited < PROMPTLY, f"the second drive job waited {waited:.1f} s:\n{fleet.output('w1')}"
    for run in (first, second):
        wait_for(up(lambda: run_status(db, run) == "passed"), f"run {run} to pass")  # noqa: B023

    output = fleet.output("w1")
    assert output.count("serving") == 1, output
    assert "stopping" not in output, output
    # A drive's end refused because a watch had failed its job as stalled (its heartbeat late):
    # Procrastinate's job task ended in an exception nobody retrieved, with a traceback.
    assert "Task exception was never retrieved" not in output, output
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, fleet.output("w1")
