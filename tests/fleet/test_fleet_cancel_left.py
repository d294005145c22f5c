"""`cancel` of a run on workers whose driver is dead and that no worker takes over (`--no-takeover`):
its attempts on the workers are stopped there, and recorded as they ended."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from fleetkit import Fleet, cli, driver, query, run_status, wait_for, workstream

pytestmark = pytest.mark.postgres


def test_cancel_stops_the_attempts_a_dead_driver_left_on_the_workers(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1", concurrency=2)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side = evidence / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    steps = [
        {
            "id": "slow",
            "tasks": [f"echo start >> {side}; touch {evidence / 'ready'}; sleep 60; echo end >> {side}"],
        },
        {"id": "quick", "tasks": ["true"]},
    ]
    proc = driver(fleet.db, workstream(drv / "ws.json", steps, max_workers=2), drv, "--no-takeover")
    wait_for((evidence / "ready").exists, "slow to start on m1")
    [(run_id,)] = query(fleet.db, "SELECT run_id FROM runs")
    passed = "SELECT 1 FROM events WHERE run_id = %s AND type = 'step.passed'"
    wait_for(lambda: query(fleet.db, passed, run_id), "quick to pass")
    proc.send_signal(signal.SIGKILL)  # the driving machine is gone; nobody takes the run over
    proc.communicate(timeout=30)
    cancelled = cli(fleet.db, "cancel", str(run_id), cwd=tmp_path)  # from another folder
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "cancelled" in cancelled.stdout and "slow" in cancelled.stdout, cancelled.stdout
    assert run_status(fleet.db, str(run_id)) == "cancelled"
    # Stopped on its worker: it never wrote its end, and the worker reported it cancelled.
    [(state, result)] = query(fleet.db, "SELECT state, result FROM stepledger_fleet_attempts"
                                        " WHERE run_id = %s AND step_id = 'slow'", run_id)  # fmt: skip
    assert state == "done" and result["reason"] == "cancelled"
    wait_for(lambda: not query(fleet.db, "SELECT 1 FROM procrastinate_jobs WHERE status = 'doing'"),
             "the worker to end the job")  # fmt: skip
    assert side.read_text() == "start\n"
    status = json.loads(cli(fleet.db, "status", str(run_id), "--json", cwd=tmp_path).stdout)
    steps_by_id = {s["step_id"]: s for s in status["steps"]}
    assert steps_by_id["slow"]["state"] == "failed" and steps_by_id["quick"]["state"] == "passed"
