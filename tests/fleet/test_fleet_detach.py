"""`run --detach --on-workers`: the run starts in the background, its attempts on the fleet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fleetkit import Fleet, cli, query, run_status, wait_for, workstream

pytestmark = pytest.mark.postgres


def test_a_detached_run_on_workers_returns_at_once_and_its_steps_run_on_the_fleet(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("m1", "--drive", "0")
    gate = tmp_path / "go"
    drv = tmp_path / "drv"
    drv.mkdir()
    steps = [{"id": "a", "tasks": [f"while [ ! -e {gate} ]; do sleep 0.02; done; echo $STEPLEDGER_HOSTNAME"]}]
    ws = workstream(drv / "ws.json", steps)
    done = cli(fleet.db, "run", str(ws), "--on-workers", "--queue", "ctl", "--detach", "--json", cwd=drv)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    assert run_status(fleet.db, run_id) == "running"  # returned while its step waits for the gate
    # The background run got the queue whose workers would take it over.
    [(queue,)] = query(fleet.db, "SELECT options->>'drive_queue' FROM runs WHERE run_id = %s", run_id)
    assert queue == "ctl"
    wait_for(lambda: query(fleet.db, "SELECT 1 FROM stepledger_fleet_attempts WHERE run_id = %s", run_id),
             "a worker to take the attempt")  # fmt: skip
    gate.touch()
    wait_for(lambda: run_status(fleet.db, run_id) == "passed", "the run to pass")
    [(host,)] = query(fleet.db, "SELECT host FROM stepledger_fleet_attempts WHERE run_id = %s", run_id)
    assert host == "m1"
