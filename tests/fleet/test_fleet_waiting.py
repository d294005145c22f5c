"""A step whose queue no live worker serves is shown waiting for a worker, not failed; once a worker
serves the queue but has not taken the job yet, queued (docs/workers.md).

Real `stepledger worker`s (fleetkit.py), a real driver, `status` from the driving machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from fleetkit import Fleet, cli, driver, query, wait_for, workstream

from stepledger.cli.run_view import LiveView, activity
from stepledger.engine.api import Stepledger

pytestmark = pytest.mark.postgres


def test_a_step_on_a_queue_nobody_serves_waits_for_a_worker_then_runs(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.start("cpu-box")  # serves only the default queue
    drv = tmp_path / "driver"
    drv.mkdir()
    go = tmp_path / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done"
    ws = workstream(drv / "ws.json", [
        {"id": "prep", "tasks": ["true"]},
        {"id": "train", "queue": "gpu", "tasks": [hold]},
        {"id": "tune", "queue": "gpu", "tasks": [hold]},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv)
    try:
        run_id = str(wait_for(lambda: query(fleet.db, "SELECT run_id FROM runs"), "the run")[0][0])

        def shown() -> dict[str, Any]:
            got = cli(fleet.db, "status", run_id, "--json", cwd=drv)
            assert got.returncode == 0, got.stderr
            return {s["step_id"]: (s["state"], s["shown_state"]) for s in json.loads(got.stdout)["steps"]}

        nobody = ("running", "waiting for a worker (queue gpu)")
        wait_for(lambda: shown() == {"prep": ("passed", "passed"), "train": nobody, "tune": nobody},
                 "both gpu steps shown waiting for a worker")  # fmt: skip
        table = cli(fleet.db, "status", run_id, cwd=drv)
        assert table.stdout.count("waiting for a worker (queue gpu)") == 2, table.stdout
        # Asked again and again (the web view asks on every change of the run): the fleet is read
        # on the connection of the first ask, not on a new one each time.
        with Stepledger(fleet.db, drv) as api:
            api.status(run_id)
            opened: list[object] = []
            connect = psycopg.connect

            def counted(*a: Any, **k: Any) -> psycopg.Connection:
                opened.append(a)
                return connect(*a, **k)

            monkeypatch.setattr(psycopg, "connect", counted)
            for _ in range(3):
                again = {s["step_id"]: s["shown_state"] for s in api.status(run_id)["steps"]}
                assert again["train"] == again["tune"] == nobody[1]
            monkeypatch.undo()
        assert opened == []
        # One gpu worker with one slot: it takes one step, the other is queued for it.
        fleet.start("gpu-box", "--queue", "gpu")
        queued = ("running", "queued (queue gpu)")
        wanted = [("passed", "passed"), queued, ("running", "running")]
        wait_for(lambda: sorted(shown().values()) == wanted, "one gpu step running, the other queued")
    finally:
        go.touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    # The driver's lines said it, with the queue (not a tty: plain lines).
    for step in ("train", "tune"):
        assert f"⏸ {step}: waiting for a worker on queue gpu (no live worker serves it)" in out, out
    ran = query(fleet.db, "SELECT step_id, host FROM stepledger_fleet_attempts WHERE run_id = %s", run_id)
    assert sorted(ran) == [("prep", "cpu-box"), ("train", "gpu-box"), ("tune", "gpu-box")]
    assert all(state == ("passed", "passed") for state in shown().values())


def test_the_live_view_line_names_the_steps_waiting_for_a_worker() -> None:
    def step(state: str) -> SimpleNamespace:
        return SimpleNamespace(state=state)

    run: Any = SimpleNamespace(steps={"a": step("running"), "b": step("running"), "c": step("running")})
    assert activity(run) == "running: a, b, c"
    waiting = {"b": ("gpu", False), "c": ("default", True)}
    assert activity(run, waiting) == "running: a · waiting for a worker: b (gpu) · queued: c"


def test_the_live_view_s_bar_follows_what_the_dispatcher_tells() -> None:
    run: Any = SimpleNamespace(
        steps={"a": SimpleNamespace(state="running"), "b": SimpleNamespace(state="running")}
    )
    view = LiveView(2)
    try:
        view.events(run, [])
        assert view.progress.tasks[0].description == "running: a, b"
        view.fleet_waiting({"b": ("gpu", False)})  # as the dispatcher's listener thread calls it
        assert view.progress.tasks[0].description == "running: a · waiting for a worker: b (gpu)"
        view.fleet_waiting({})
        assert view.progress.tasks[0].description == "running: a, b"
    finally:
        view.close()
