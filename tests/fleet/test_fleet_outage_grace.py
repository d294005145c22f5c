"""A worker stopping with SIGTERM is alive to the driver for its whole grace period
(engine/fleet/ride_out.py: its heartbeat goes on until its attempts' processes are gone).

Procrastinate's worker ends its heartbeat task as soon as it stops, then waits for running jobs
(up to `--grace`, 60 s): an attempt still finishing after the stall timeout was taken for stalled,
fenced *interrupted* and started on another worker while it still ran here, and its own outcome was
refused. Here the attempt finishes only after the worker's heartbeat has been written a stall
timeout past the stop — a moment a worker without heartbeats never reaches (its attempt would have
been fenced by then) — with a second worker free to take a retry.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fleetkit import (
    FAST,
    Fleet,
    attempt_rows,
    check_evidence,
    driver,
    evidence_task,
    query,
    wait_for,
    workstream,
)

pytestmark = pytest.mark.postgres


def test_an_attempt_finishing_in_its_grace_period_is_not_started_again(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1", "--drive", "0")
    side, gate = tmp_path / "side.log", tmp_path / "gate"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [evidence_task(side, 0, gate)]}])
    proc = driver(fleet.db, ws, drv)
    try:
        wait_for(lambda: Path(f"{side}.x.ready").exists(), "x to start on m1")
        (worker_id,) = query(fleet.db, "SELECT worker_id FROM stepledger_fleet_workers WHERE host = 'm1'")[0]
        (stopped_at,) = query(fleet.db, "SELECT now()")[0]
        fleet.workers["m1"].send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping" in fleet.output("m1"), "m1 to say it is stopping")
        fleet.start("m2", "--drive", "0")  # free to take a retry
        # One check of the driver past the stall timeout, with m1's heartbeat still fresh.
        past = float(FAST["STEPLEDGER_FLEET_STALL_TIMEOUT"]) + 1.0
        wait_for(
            lambda: query(
                fleet.db,
                "SELECT 1 FROM procrastinate_workers WHERE id = %s"
                " AND last_heartbeat > %s + make_interval(secs => %s)",
                worker_id, stopped_at, past,
            ),
            "m1's heartbeat to be written a stall timeout after its stop",
            timeout=30,
        )  # fmt: skip
        gate.touch()
        assert fleet.workers["m1"].wait(timeout=60) == 0, fleet.output("m1")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert check_evidence(side, ["x"]) == {"x": [(1, "m1")]}
    rows = attempt_rows(fleet.db, next(r for r in out.split() if r.startswith("run-")))
    assert [(r[1], r[2], r[3], (r[4] or {}).get("passed")) for r in rows] == [(1, "m1", "done", True)], rows
