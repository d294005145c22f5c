"""Workers ride a database outage out: an attempt that ended is not lost, one running is not
started again elsewhere while it runs (engine/fleet/ride_out.py).

On a private throw-away cluster (never the server in use), with outages a worker must survive
without being taken for dead (see SETTINGS).

- The window of an ended attempt, forced: its work is done and its worker is recording its
  outcome when the database goes away. The test holds the attempt's ledger row locked (a
  transaction of its own) so the record waits on that lock; it sees it wait (pg_stat_activity),
  then stops the cluster: the record's connection breaks mid-statement, the lock goes with it.
  The outcome must be recorded once the database is back, before the driver could take the worker
  for dead: the step runs no second attempt.
- An attempt still running through the outage, with a second worker free to take a retry: the
  attempt goes on after the outage (longer than the stall timeout), and no second attempt starts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    attempt_rows,
    check_evidence,
    check_no_overlap,
    check_replay,
    evidence_task,
    query,
    run_status,
    wait_for,
    workstream,
)
from private_cluster import PrivateCluster

from stepledger.engine.fleet.settings import conninfo

pytestmark = pytest.mark.postgres

# The production stall timeout, a heartbeat of 1 s. An outage of OUTAGE seconds (`pg_ctl stop -m
# immediate`, then `start`: about half a second more) is longer than a heartbeat interval, so
# every connection of a worker fails during it, and ends with the last heartbeat less than the
# stall timeout old, so a worker whose heartbeat is written again promptly is not taken for dead.
# (Heartbeats through a connection pool's reconnection back-off, 1 s, then 2, then 4 — as
# Procrastinate's were — come back about 7 s after such an outage began: taken for dead.)
SETTINGS = {"STEPLEDGER_FLEET_HEARTBEAT": "1", "STEPLEDGER_FLEET_STALL_TIMEOUT": "6",
            "STEPLEDGER_LEASE_SECONDS": "5"}  # fmt: skip
OUTAGE = 3.2  # seconds the database is away: the scenario's length, not a wait for something
RECORDING = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND query LIKE '%UPDATE stepledger_fleet_attempts SET state = ''done''%'"
)


@pytest.fixture
def fleet(fleet_on_private_cluster: Fleet) -> Fleet:
    return fleet_on_private_cluster


@contextlib.contextmanager
def _driving(db: str, ws: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`stepledger run WS --on-workers` with SETTINGS, as the driving machine (its output in
    `cwd`/driver.log); killed on the way out if it is still there (a test that failed half-way)."""
    # A lease longer than the outage: a driver that gives up its run during one (its lease may
    # have run out) hands it to the fleet, a takeover these tests are not about.
    env = {**os.environ, **SETTINGS, "STEPLEDGER_HOSTNAME": "driver", "STEPLEDGER_LEASE_SECONDS": "15"}
    env.pop("STEPLEDGER_DB", None)
    with open(cwd / "driver.log", "wb") as log:
        run = subprocess.Popen([*STEPLEDGER, "run", str(ws), "--db", db, "--on-workers"], cwd=cwd,
                               stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def _count(db: str, sql: str, *args: object) -> int:
    try:
        with psycopg.connect(conninfo(db), autocommit=True) as conn:
            row = conn.execute(sql, args or None).fetchone()
    except psycopg.OperationalError:
        return 0
    return int(row[0]) if row else 0


def _outage(cluster: PrivateCluster, how: str) -> None:
    if how == "restart":
        cluster.pg_ctl("restart", "-m", "immediate")
        return
    cluster.pg_ctl("stop", "-m", "immediate")
    time.sleep(OUTAGE)
    cluster.pg_ctl("start")


def _serve_until_ended(fleet: Fleet, db: str, run_id: str, hosts: tuple[str, ...], drv: Path) -> str:
    def ended() -> str:
        for host in hosts:
            if fleet.workers[host].poll() is not None:  # as a service manager would
                fleet.start(host, "--drive", "0", env_extra=SETTINGS, wait=False)
        try:
            status = run_status(db, run_id)
        except psycopg.OperationalError:
            return ""
        return status if status not in ("", "running") else ""

    try:
        return str(wait_for(ended, "the run to end", timeout=120))
    except AssertionError as error:
        said = [f"{host}:\n{fleet.output(host)}" for host in hosts]
        raise AssertionError("\n".join([str(error), *said, (drv / "driver.log").read_text()])) from None


@pytest.mark.parametrize("how", ["outage", "restart"])
def test_an_outcome_being_recorded_when_the_database_goes_away_is_kept(
    private_cluster: PrivateCluster, fleet: Fleet, tmp_path: Path, how: str
) -> None:
    db = private_cluster.url
    fleet.start("a1", "--drive", "0", env_extra=SETTINGS)
    side = tmp_path / "side.log"
    gate = tmp_path / "gate"
    drv = tmp_path / "driver"
    drv.mkdir()
    steps = [{"id": "s1", "tasks": [evidence_task(side, 0, gate)]},
             {"id": "s2", "tasks": [evidence_task(side, 0)], "depends_on": ["s1"]}]  # fmt: skip
    ws = workstream(drv / "ws.json", steps)
    with _driving(db, ws, drv) as run:
        wait_for(lambda: Path(f"{side}.s1.ready").exists(), "s1 to start")
        (run_id,) = {row[0] for row in query(db, "SELECT run_id FROM stepledger_fleet_attempts")}
        holder = psycopg.connect(conninfo(db))
        # The ledger row locked: the worker's record of s1's outcome waits on it.
        holder.execute(
            "SELECT 1 FROM stepledger_fleet_attempts WHERE run_id = %s AND step_id = 's1' FOR UPDATE",
            (run_id,),
        )
        gate.touch()
        wait_for(lambda: _count(db, RECORDING), "the worker to be recording s1's outcome")
        assert "end s1 1" in side.read_text()  # its work is done
        _outage(private_cluster, how)
        holder.close()
        assert _serve_until_ended(fleet, db, run_id, ("a1",), drv) == "passed", (
            fleet.output("a1") + (drv / "driver.log").read_text()
        )
        run.wait(timeout=60)
    assert run.returncode == 0, (drv / "driver.log").read_text()
    # s1 ran once: its first attempt's outcome was kept, no second attempt was started.
    check_evidence(side, ["s1", "s2"])
    s1 = [row for row in attempt_rows(db, run_id) if row[0] == "s1"]
    assert [(row[1], row[3], (row[4] or {}).get("passed")) for row in s1] == [(1, "done", True)], s1
    check_no_overlap(db, run_id)
    check_replay(db, run_id, drv)


def test_an_attempt_running_through_an_outage_is_not_started_again(
    private_cluster: PrivateCluster, fleet: Fleet, tmp_path: Path
) -> None:
    db = private_cluster.url
    fleet.start("a1", "--drive", "0", env_extra=SETTINGS)
    side = tmp_path / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    # s1 works on for longer than the stall timeout after the outage: a worker taken for dead
    # would have it retried on a2 while it still runs on a1.
    ws = workstream(drv / "ws.json", [{"id": "s1", "tasks": [evidence_task(side, OUTAGE + 15)]}])
    with _driving(db, ws, drv) as run:
        wait_for(lambda: side.exists() and "start s1 1 a1" in side.read_text(), "s1 to start on a1")
        fleet.start("a2", "--drive", "0", env_extra=SETTINGS)  # free to take a retry
        (run_id,) = {row[0] for row in query(db, "SELECT run_id FROM stepledger_fleet_attempts")}
        _outage(private_cluster, "outage")
        assert _serve_until_ended(fleet, db, run_id, ("a1", "a2"), drv) == "passed", (
            fleet.output("a1") + (drv / "driver.log").read_text()
        )
        run.wait(timeout=60)
    assert run.returncode == 0, (drv / "driver.log").read_text()
    assert check_evidence(side, ["s1"]) == {"s1": [(1, "a1")]}
    check_no_overlap(db, run_id)
    for host in ("a1", "a2"):  # rode it out: neither stopped
        assert fleet.output(host).count("serving") == 1, fleet.output(host)
