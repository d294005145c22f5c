"""Runs driven by workers (`stepledger submit`, docs/workers.md), on the real PostgreSQL server.

Every worker is a real process standing for a machine (its own session, work directory and
STEPLEDGER_HOSTNAME); the commands of the "driver" machine (submit, status, cancel, events) are
real processes too. Steps write `start`/`end STEP ATTEMPT HOST TIME` lines to a side-effect file:
the evidence that no passed step ran twice and that no two attempts of a step overlapped.

A worker that only runs attempts is started with `--drive 0`; one that only drives serves the
queue `ctl` (the queue the run is submitted to) and no attempt queue: so a test knows which
machine drives and which runs the attempts.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    check_evidence,
    check_no_overlap,
    check_replay,
    cli,
    driver_env,
    driving_host,
    evidence_task,
    query,
    run_status,
    session_members,
    wait_for,
    workstream,
)

pytestmark = pytest.mark.postgres

DRIVER_MODULE = b"stepledger.engine.fleet.driver"


def _submit(db: str, ws: Path, *extra: str) -> str:
    """`stepledger submit` from the driver machine: it returns at once with the run's id alone."""
    done = cli(db, "submit", str(ws), *extra, cwd=ws.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"run-\S+\n", done.stdout), done.stdout
    return done.stdout.strip()


def _ended(db: str, run_id: str, timeout: float = 40.0) -> str:
    """The run's final status, once it has one."""
    return str(wait_for(lambda: (s := run_status(db, run_id)) not in ("", "running") and s, "the run to end",
                        timeout))  # fmt: skip


def _drivers(sid: int) -> list[int]:
    """The live driver processes in the worker session `sid`."""
    found = []
    for pid in session_members(sid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if DRIVER_MODULE in cmdline.split(b"\0"):
            found.append(pid)
    return found


def _gated_run(fleet: Fleet, tmp_path: Path, *submit_args: str) -> tuple[str, Path, Path, Path]:
    """Submit x then y (y waits for x; x holds until the file `go` exists) from the driver machine
    and wait until x runs; (run id, side-effect file, go, the driver's folder)."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, go = evidence / "side.log", evidence / "go"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [evidence_task(side, 0, gate=go)]},
        {"id": "y", "tasks": [evidence_task(side, 0.1)], "depends_on": ["x"]},
    ])  # fmt: skip
    run_id = _submit(fleet.db, ws, *submit_args)
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    return run_id, side, go, drv


def _first_dispatch_after(db: str, run_id: str, moment: float) -> float:
    """Seconds from `moment` to the first attempt the log records started after it."""
    rows = query(db, "SELECT min(recorded_at) FROM events WHERE run_id = %s AND type = 'step.started'"
                     " AND recorded_at > %s", run_id, moment)  # fmt: skip
    assert rows and rows[0][0] is not None, "no attempt started after the kill"
    return float(rows[0][0]) - moment


def test_submit_returns_at_once_and_a_worker_drives_the_run(fleet: Fleet, tmp_path: Path) -> None:
    side = tmp_path / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [evidence_task(side, 0.1)]},
        {"id": "b", "tasks": [evidence_task(side, 0.1)], "depends_on": ["a"]},
        {"id": "c", "tasks": [evidence_task(side, 0.1)], "depends_on": ["a"]},
    ])  # fmt: skip
    run_id = _submit(fleet.db, ws)  # no worker is alive: recorded, and waiting for one
    started = cli(fleet.db, "events", run_id, "--type", "run.started", "--json", cwd=drv)
    options = json.loads(started.stdout.splitlines()[0])["payload"]["options"]
    assert options["on_workers"] is True and options["worker_driven"] is True
    waiting = cli(fleet.db, "status", run_id, "--json", cwd=drv)
    shown = json.loads(waiting.stdout)
    assert shown["shown_status"] == "running (waiting for a worker to drive it)", shown
    assert shown["orchestrator"] == "waiting"
    # Followed from the driver machine while a worker elsewhere drives it.
    follow_out = tmp_path / "follow.out"
    with follow_out.open("wb") as out:
        command = [*STEPLEDGER, "events", run_id, "--follow", "--json", "--db", fleet.db]
        follow = subprocess.Popen(command, cwd=drv, stdout=out, stderr=subprocess.STDOUT, env=driver_env())
    try:
        fleet.start("m1", concurrency=2)
        assert _ended(fleet.db, run_id) == "passed"
        wait_for(lambda: '"run.finished"' in follow_out.read_text(), "events --follow to show the end")
    finally:
        follow.kill()
        follow.wait()
    check_evidence(side, ["a", "b", "c"])
    resumed = cli(fleet.db, "events", run_id, "--type", "run.resumed", "--json", cwd=drv)
    assert [json.loads(line)["payload"]["host"] for line in resumed.stdout.splitlines()] == ["m1"]
    # The driver's folder is on the worker that drove it, not on the machine that submitted.
    assert (fleet.root / "m1" / ".stepledger" / "runs" / run_id / "orchestrator.log").is_file()
    assert not (drv / ".stepledger" / "runs" / run_id / "orchestrator.log").exists()
    done = json.loads(cli(fleet.db, "status", run_id, "--json", cwd=drv).stdout)
    assert done["shown_status"] == "passed" and done["orchestrator"] is None
    check_replay(fleet.db, run_id, drv)


def test_submit_refuses_bad_input_with_one_line_and_records_nothing(pg_url: str, tmp_path: Path) -> None:
    good = workstream(tmp_path / "ws.json", [{"id": "a", "tasks": ["true"]}])
    broken = tmp_path / "broken.json"
    broken.write_text(
        '{"id": "x", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"], "depends_on": ["zz"]}]}'
    )
    isolated = tmp_path / "isolated.json"
    data = json.loads(good.read_text())
    data["execution"]["isolation"] = "worktree"
    isolated.write_text(json.dumps(data))
    cases = [
        (pg_url, [str(broken)], "zz"),
        (pg_url, [str(tmp_path / "missing.json")], "missing.json"),
        (pg_url, [str(isolated)], "cannot be used with --on-workers"),
        (pg_url, [str(good), "--queue", " "], "--queue"),
        (pg_url, [str(good), "--max-workers", "0"], "--max-workers"),
        (f"sqlite:///{tmp_path / 'ledger.db'}", [str(good)], "needs the log in PostgreSQL"),
    ]
    for db, args, said in cases:
        done = cli(db, "submit", *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert said in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stdout == "", (args, done.stdout)
    assert query(pg_url, "SELECT 1 FROM runs") == []
    assert query(pg_url, "SELECT 1 FROM procrastinate_jobs") == []


def _kill_the_driver(fleet: Fleet, rng: random.Random, tmp_path: Path, worker_alone: bool) -> None:
    hosts = ("m1", "m2", "m3")
    for host in hosts:
        fleet.start(host, concurrency=2, wait=False)
    fleet.serving(*hosts)
    side = tmp_path / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    ids = [f"s{i}" for i in range(6)]
    steps = []
    for n, sid in enumerate(ids):
        requires = sorted(rng.sample(ids[:n], min(n, rng.randint(0, 2))))
        steps.append({"id": sid, "tasks": [evidence_task(side, round(rng.uniform(0.3, 1.2), 2))],
                      "depends_on": requires})  # fmt: skip
    ws = workstream(drv / "ws.json", steps, max_workers=3)
    run_id = _submit(fleet.db, ws)
    starts = rng.randint(1, 4)
    wait_for(
        lambda: side.exists() and side.read_text().count("start") >= starts, f"{starts} attempt(s) to start"
    )
    victim = wait_for(lambda: driving_host(fleet.db, run_id), "a worker to drive the run")
    killed_at = time.time()
    if worker_alone:
        # The worker's process alone: its driver dies with it (the parent-death signal), as it
        # would with its machine; then the rest of the machine goes too.
        proc = fleet.workers[victim]
        assert _drivers(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not _drivers(proc.pid), "the driver to die with its worker", timeout=5)
    fleet.kill_machine(victim)
    assert _ended(fleet.db, run_id) == "passed"
    took_over = _first_dispatch_after(fleet.db, run_id, killed_at)
    print(f"kill -9 of the driving worker -> first new dispatch: {took_over:.2f} s")
    resumed = cli(fleet.db, "events", run_id, "--type", "run.resumed", "--json", cwd=drv)
    drivers = [json.loads(line)["payload"]["host"] for line in resumed.stdout.splitlines()]
    assert drivers[0] == victim and victim not in drivers[1:], drivers  # taken over by another
    check_evidence(side, ids, fleet.kills)
    check_no_overlap(fleet.db, run_id)
    check_replay(fleet.db, run_id, drv)


@pytest.mark.parametrize("seed", range(2))
def test_kill_9_of_the_driving_worker_another_takes_the_run_over(
    fleet: Fleet, tmp_path: Path, seed: int
) -> None:
    _kill_the_driver(fleet, random.Random(seed), tmp_path, worker_alone=seed == 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
def test_kill_9_of_the_driving_worker_soak(fleet: Fleet, tmp_path: Path, seed: int) -> None:
    _kill_the_driver(fleet, random.Random(seed), tmp_path, worker_alone=seed % 2 == 0)


def test_every_worker_dies_then_one_comes_back_and_drives_the_run_to_its_end(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("m1", concurrency=2, wait=False)
    fleet.start("m2", concurrency=2, wait=False)
    fleet.serving("m1", "m2")
    side, go = tmp_path / "side.log", tmp_path / "go"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [evidence_task(side, 0, gate=go)]},
        {"id": "b", "tasks": [evidence_task(side, 0.1)]},
        {"id": "c", "tasks": [evidence_task(side, 0.1)], "depends_on": ["a", "b"]},
    ])  # fmt: skip
    run_id = _submit(fleet.db, ws)
    wait_for(lambda: Path(f"{side}.a.ready").exists() and "end b" in side.read_text(),
             "b to pass and a to be running")  # fmt: skip
    fleet.kill_machine("m1")
    fleet.kill_machine("m2")
    go.touch()  # a's first attempt died with its machine: it never sees the gate open
    wait_for(lambda: not driving_host(fleet.db, run_id), "the dead driver's lease to run out")
    fleet.start("m1", concurrency=2)  # the machine comes back
    assert _ended(fleet.db, run_id) == "passed"
    started = check_evidence(side, ["a", "b", "c"])
    assert [n for n, _ in started["b"]] == [1]  # passed before the deaths: not run again
    assert [n for n, _ in started["a"]] == [1, 2]  # died with its machine, retried once
    check_no_overlap(fleet.db, run_id)
    check_replay(fleet.db, run_id, drv)


def test_a_worker_killed_during_the_takeover_itself(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("a1", "--drive", "0", wait=False)  # runs the attempts, drives nothing
    for host in ("d1", "d2", "d3"):
        fleet.start(host, "--queue", "ctl", wait=False)  # drive only: no attempt is on queue ctl
    fleet.serving("a1", "d1", "d2", "d3")
    run_id, side, go, drv = _gated_run(fleet, tmp_path, "--queue", "ctl")  # x runs on a1
    first = wait_for(lambda: driving_host(fleet.db, run_id), "a worker to drive the run")
    fleet.kill_machine(first)

    def taking_over() -> str:
        # The new driver holds the lease while it waits for x, still running on a1.
        return next(
            (h for h in ("d1", "d2", "d3") if h != first and "still runs on a1" in fleet.output(h)), ""
        )

    second = wait_for(taking_over, "another worker to take the run over and wait for x")
    fleet.kill_machine(second)  # in the middle of the takeover
    third = ({"d1", "d2", "d3"} - {first, second}).pop()
    wait_for(lambda: "still runs on a1" in fleet.output(third), "the third worker to take the run over")
    go.touch()
    assert _ended(fleet.db, run_id) == "passed"
    started = check_evidence(side, ["x", "y"])
    assert started["x"] == [(1, "a1")]  # awaited by each new driver, never started again
    check_no_overlap(fleet.db, run_id)
    resumed = cli(fleet.db, "events", run_id, "--type", "run.resumed", "--json", cwd=drv)
    drivers = [json.loads(line)["payload"]["host"] for line in resumed.stdout.splitlines()]
    assert drivers == [first, third], drivers  # the second died before it recorded anything
    check_replay(fleet.db, run_id, drv)


def test_cancel_of_a_submitted_run_from_another_machine(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1", concurrency=2)
    run_id, side, _, drv = _gated_run(fleet, tmp_path)
    cancelled = cli(fleet.db, "cancel", run_id, cwd=drv)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "cancel requested" in cancelled.stdout and "on m1" in cancelled.stdout, cancelled.stdout
    assert _ended(fleet.db, run_id) == "cancelled"
    assert [line.split()[0] for line in side.read_text().splitlines()] == ["start"]  # x was killed
    [(result,)] = query(fleet.db, "SELECT result FROM stepledger_fleet_attempts WHERE run_id = %s", run_id)
    assert result["reason"] == "cancelled"
    check_replay(fleet.db, run_id, drv)


def test_cancel_while_no_worker_drives_the_run(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("a1", "--drive", "0", wait=False)
    fleet.start("d1", "--queue", "ctl", wait=False)
    fleet.serving("a1", "d1")
    run_id, side, _, drv = _gated_run(fleet, tmp_path, "--queue", "ctl")  # x runs on a1
    wait_for(lambda: driving_host(fleet.db, run_id) == "d1", "d1 to drive the run")
    fleet.kill_machine("d1")
    wait_for(lambda: not driving_host(fleet.db, run_id), "d1's lease to run out")
    cancelled = cli(fleet.db, "cancel", run_id, cwd=drv)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "the worker that drives run" in cancelled.stdout, cancelled.stdout
    fleet.start("d2", "--queue", "ctl")  # takes the run over: stops x instead of waiting for it
    assert _ended(fleet.db, run_id) == "cancelled"
    assert [line.split()[0] for line in side.read_text().splitlines()] == ["start"]  # x was stopped
    [(result,)] = query(fleet.db, "SELECT result FROM stepledger_fleet_attempts WHERE run_id = %s", run_id)
    assert result["reason"] == "cancelled"
    assert "asking it to stop" in fleet.output("d2")
    check_replay(fleet.db, run_id, drv)


def test_a_stopped_worker_hands_its_runs_over_at_once(fleet: Fleet, tmp_path: Path) -> None:
    # A long lease: a takeover that waited for it to run out would not come within this test.
    long_lease = {"STEPLEDGER_LEASE_SECONDS": "120"}
    fleet.start("a1", "--drive", "0", wait=False)
    fleet.start("d1", "--queue", "ctl", env_extra=long_lease, wait=False)
    fleet.serving("a1", "d1")
    run_id, side, go, drv = _gated_run(fleet, tmp_path, "--queue", "ctl")  # x runs on a1
    wait_for(lambda: driving_host(fleet.db, run_id) == "d1", "d1 to drive the run")
    fleet.start("d2", "--queue", "ctl", env_extra=long_lease)
    d1 = fleet.workers["d1"]
    d1.send_signal(signal.SIGTERM)
    assert d1.wait(timeout=30) == 0, fleet.output("d1")
    assert f"handed run {run_id} back to the fleet" in fleet.output("d1")
    assert not _drivers(d1.pid)
    wait_for(lambda: "still runs on a1" in fleet.output("d2"), "d2 to take the run over", timeout=30)
    go.touch()
    assert _ended(fleet.db, run_id) == "passed"
    assert check_evidence(side, ["x", "y"])["x"] == [(1, "a1")]
    check_replay(fleet.db, run_id, drv)


def test_a_worker_started_with_drive_0_drives_nothing(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("a1", "--drive", "0")
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "a", "tasks": ["true"]}])
    run_id = _submit(fleet.db, ws)
    # Its drive job waits: a1 takes attempts only, however often its watch looks at the run.
    waiting = "SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo'"
    wait_for(lambda: query(fleet.db, waiting, f"drive/{run_id}"), "the drive job to wait")
    assert run_status(fleet.db, run_id) == "running" and not driving_host(fleet.db, run_id)
    fleet.start("m2", concurrency=1)
    assert _ended(fleet.db, run_id) == "passed"
    assert os.path.exists(fleet.root / "m2" / ".stepledger" / "runs" / run_id / "orchestrator.log")
    resumed = cli(fleet.db, "events", run_id, "--type", "run.resumed", "--json", cwd=drv)
    assert [json.loads(line)["payload"]["host"] for line in resumed.stdout.splitlines()] == ["m2"]


def test_the_fleet_s_tables_installed_already_are_not_installed_again(pg_url: str) -> None:
    """Every submit, driver start and takeover installs the fleet's tables if missing; once they are
    there that is one read, with no lock: a reader holding the attempt ledger (a status, the web
    view, another driver) does not hold it up."""
    import psycopg

    from stepledger.engine.fleet import schema
    from stepledger.engine.fleet.settings import conninfo

    info = conninfo(pg_url)
    with psycopg.connect(info, autocommit=True) as conn:
        schema.install(conn)
    with psycopg.connect(info) as reader, psycopg.connect(info, autocommit=True) as conn:
        reader.execute("SELECT 1 FROM stepledger_fleet_attempts")  # its transaction stays open
        conn.execute("SET lock_timeout = '2s'")
        schema.install(conn)  # an ALTER TABLE would wait for the reader, then fail
        reader.rollback()


def test_two_first_installs_at_once_install_once(pg_url: str) -> None:
    """The first workers of a database start together: one installs the fleet's tables while the
    other, having found them missing, waits for the lock; that one then finds them there."""
    import threading

    import psycopg

    from stepledger.engine.fleet import schema
    from stepledger.engine.fleet.settings import conninfo

    info = conninfo(pg_url)
    errors: list[Exception] = []

    def second() -> None:
        try:
            with psycopg.connect(info, autocommit=True) as conn:
                schema.install(conn)
        except Exception as error:  # the test's verdict
            errors.append(error)

    with psycopg.connect(info, autocommit=True) as first, psycopg.connect(info, autocommit=True) as look:
        with first.transaction():
            first.execute("SELECT pg_advisory_xact_lock(%s)", (schema._INSTALL_LOCK,))
            other = threading.Thread(target=second)
            other.start()
            blocked = "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            wait_for(lambda: look.execute(blocked).fetchone(), "the second install to wait for the lock")
            schema.install(first)  # the first installs (its transaction holds the lock already)
        other.join(timeout=30)
    assert not errors, errors


def test_a_takeover_withdraws_the_job_of_an_attempt_no_worker_took(fleet: Fleet, tmp_path: Path) -> None:
    """A dead driver left an attempt whose job no worker took (nobody serves its queue): the new
    driver fences it interrupted and withdraws the job, which no worker is to take for nothing."""
    fleet.start("d1", "--queue", "ctl")
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "g", "queue": "gpu", "tasks": ["true"]}])
    run_id = _submit(fleet.db, ws, "--queue", "ctl")
    first = f"{run_id}/g/1"
    job = "SELECT status FROM procrastinate_jobs WHERE queueing_lock = %s"
    wait_for(lambda: query(fleet.db, job, first), "g's job to wait for a gpu worker")
    fleet.kill_machine("d1")
    wait_for(lambda: not driving_host(fleet.db, run_id), "d1's lease to run out")
    fleet.start("d2", "--queue", "ctl")
    wait_for(lambda: query(fleet.db, job, first)[0][0] == "cancelled", "the takeover to withdraw g's job")
    [(result,)] = query(
        fleet.db, "SELECT result FROM stepledger_fleet_attempts WHERE run_id = %s AND attempt = 1", run_id
    )
    assert result["reason"] == "interrupted"
