"""Seeded random kills on a fleet (run with --soak): workers' machines and the driver die at random
moments; every run must still pass with no step's attempts overlapping and each step ending once.

Each step appends `start STEP ATTEMPT HOST TIME` and `end STEP ATTEMPT HOST TIME` lines to a shared
side-effect file (the evidence). A killed machine is started again under the same name; a killed
driver is followed by `stepledger resume` (the run is started with --no-takeover, so the fleet does
not take it over meanwhile: test_fleet_run_takeover.py soaks that).
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    check_evidence,
    check_replay,
    driver,
    driver_env,
    evidence_task,
    query,
    workstream,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ITERATIONS = 12
HOSTS = ("m1", "m2", "m3")


def _steps(side: Path, rng: random.Random) -> list[dict]:
    ids = [f"s{i}" for i in range(8)]
    steps = []
    for n, sid in enumerate(ids):
        requires = sorted(rng.sample(ids[:n], min(n, rng.randint(0, 2))))
        seconds = round(rng.uniform(0.2, 1.2), 2)
        steps.append({"id": sid, "depends_on": requires, "tasks": [evidence_task(side, seconds)]})
    return steps


def _run_id(db: str) -> str:
    """The run's id, from the log ("" if the killed driver had not recorded it yet)."""
    rows = query(db, "SELECT run_id FROM runs")
    return str(rows[0][0]) if rows else ""


@pytest.mark.parametrize("seed", range(ITERATIONS))
def test_random_kills_on_a_fleet(fleet: Fleet, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    for host in HOSTS:
        fleet.start(host, concurrency=2)
    side = tmp_path / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", _steps(side, rng), max_workers=4)
    proc: subprocess.Popen[str] = driver(fleet.db, ws, drv, "--no-takeover")
    for _ in range(rng.randint(1, 3)):
        time.sleep(rng.uniform(0.3, 2.0))  # chaos timing, not synchronisation
        if proc.poll() is not None:
            break
        if rng.random() < 0.7:
            victim = rng.choice(HOSTS)
            fleet.kill_machine(victim)
            fleet.start(victim, concurrency=2)
        else:
            proc.kill()
            proc.communicate()
            run_id = _run_id(fleet.db)
            if not run_id:  # killed before it recorded the run: nothing happened, start it again
                proc = driver(fleet.db, ws, drv, "--no-takeover")
                continue
            proc = subprocess.Popen(
                [*STEPLEDGER, "resume", run_id, "--db", fleet.db], cwd=drv, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=driver_env(),
            )  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    check_evidence(side, [f"s{i}" for i in range(8)], fleet.kills)
    run_id = _run_id(fleet.db)
    check_replay(fleet.db, run_id, drv)
