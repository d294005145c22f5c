"""Runs whose attempts go to `stepledger worker`s (docs/workers.md), on the real PostgreSQL server.

Every worker is a real process standing for a machine: its own session, work directory and
STEPLEDGER_HOSTNAME. The driver is a real `stepledger run --on-workers` process.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    check_replay,
    cli,
    driver,
    driver_env,
    query,
    session_members,
    wait_for,
    workstream,
)
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, _ = proc.communicate(timeout=120)
    found = re.search(r"^run (run-\S+)$", out, re.MULTILINE)
    assert found, out
    run_id = found.group(1)
    return proc.returncode, out, run_id


def _run_id(db: str) -> str:
    rows = query(db, "SELECT run_id FROM runs")
    assert len(rows) == 1, rows
    return str(rows[0][0])


def _attempts(db: str, run_id: str) -> dict[tuple[str, int], tuple[str, str, dict]]:
    rows = query(db, "SELECT step_id, attempt, host, state, result FROM stepledger_fleet_attempts"
                     " WHERE run_id = %s", run_id)  # fmt: skip
    return {(step, attempt): (host, state, result) for step, attempt, host, state, result in rows}


def test_attempts_spread_over_workers_each_in_its_own_work_directory(fleet: Fleet, tmp_path: Path) -> None:
    m1 = fleet.start("m1")
    m2 = fleet.start("m2")
    shared = tmp_path / "shared"
    shared.mkdir()
    # a and b wait for each other: with one slot per worker they can only pass on two machines.
    barrier = (f"touch {shared}/$STEPLEDGER_STEP_ID; pwd > {shared}/$STEPLEDGER_STEP_ID.pwd;"
               f" for i in $(seq 1200); do [ -e {shared}/a ] && [ -e {shared}/b ] && break; sleep 0.05; done;"
               f" [ -e {shared}/a ] && [ -e {shared}/b ]")  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [barrier]},
        {"id": "b", "tasks": [barrier]},
        {"id": "c", "tasks": [f"echo c >> {shared}/c.side; pwd > {shared}/c.pwd"], "depends_on": ["a", "b"],
         "cwd": "out/c", "acceptance_tests": [f"test -s {shared}/c.side"]},
    ])  # fmt: skip
    code, out, run_id = _finish(driver(fleet.db, ws, drv))
    assert code == 0, out
    attempts = _attempts(fleet.db, run_id)
    assert sorted(attempts) == [("a", 1), ("b", 1), ("c", 1)]
    assert {attempts["a", 1][0], attempts["b", 1][0]} == {"m1", "m2"}
    assert all(state == "done" and result["passed"] for _, state, result in attempts.values())
    # Each attempt ran in its worker's work directory, and its log is there, not on the driver.
    for step in ("a", "b"):
        home = {"m1": m1, "m2": m2}[attempts[step, 1][0]]
        assert (shared / f"{step}.pwd").read_text().strip() == str(home)
        assert (home / ".stepledger" / "runs" / run_id / f"{step}.1.log").is_file()
    assert (shared / "c.side").read_text() == "c\n"
    # A step's cwd is taken under the worker's work directory, made there as a local run makes it.
    c_home = {"m1": m1, "m2": m2}[attempts["c", 1][0]]
    assert (shared / "c.pwd").read_text().strip() == str(c_home / "out" / "c")
    check_replay(fleet.db, run_id, drv)


def test_a_worker_killed_mid_attempt_is_recorded_interrupted_and_retried_elsewhere(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("m1")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, ready = evidence / "side.log", evidence / "ready"
    # Attempt 1 signals it is running and then works for long; attempt 2 finishes at once.
    task = (f'echo "start $STEPLEDGER_ATTEMPT $STEPLEDGER_HOSTNAME" >> {side};'
            f' if [ "$STEPLEDGER_ATTEMPT" = 1 ]; then touch {ready}; sleep 30; fi;'
            f' echo "end $STEPLEDGER_ATTEMPT" >> {side}')  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [task], "circuit_breaker": {"max_attempts": 1}},  # interruptions do not count
        {"id": "y", "tasks": [f"echo y >> {evidence}/y.side"], "depends_on": ["x"]},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv)
    wait_for(ready.exists, "attempt 1 to start on m1")
    fleet.start("m2")
    fleet.kill_machine("m1")  # the worker, its pool and the attempt's sleep: a machine gone
    code, out, run_id = _finish(proc)
    assert code == 0, out
    lines = side.read_text().splitlines()
    # Attempt 1 died with m1 (never ended); attempt 2 ran once, on m2, to its end.
    assert lines == ["start 1 m1", "start 2 m2", "end 2"]
    attempts = _attempts(fleet.db, run_id)
    assert ("x", 1) in attempts, (run_id, attempts, out)
    assert attempts["x", 1][0] == "m1" and attempts["x", 1][2]["reason"] == "interrupted"
    assert attempts["x", 2][0] == "m2" and attempts["x", 2][2]["passed"]
    assert (evidence / "y.side").read_text() == "y\n"
    events = cli(fleet.db, "events", run_id, "--json", cwd=drv)
    assert '"reason": "interrupted"' in events.stdout
    check_replay(fleet.db, run_id, drv)


def test_an_attempt_that_ends_while_its_driver_is_dead_is_kept_by_resume(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("m1")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, ready, go = evidence / "side.log", evidence / "ready", evidence / "go"
    # x runs until the test lets it go: by then its driver is dead.
    task = (f'echo "start $STEPLEDGER_ATTEMPT" >> {side}; touch {ready};'
            f' for i in $(seq 1200); do [ -e {go} ] && break; sleep 0.05; done;'
            f' echo "end $STEPLEDGER_ATTEMPT" >> {side}')  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [task]},
        {"id": "y", "tasks": [f"echo y >> {evidence}/y.side"], "depends_on": ["x"]},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv, "--no-takeover")
    wait_for(ready.exists, "attempt 1 of x to start on m1")
    proc.kill()
    code, _, run_id = _finish(proc)
    assert code == -9
    go.touch()
    wait_for(lambda: _attempts(fleet.db, run_id).get(("x", 1), ("", ""))[1] == "done", "x's outcome")
    resumed = cli(fleet.db, "resume", run_id, cwd=drv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert side.read_text().splitlines() == ["start 1", "end 1"]  # kept, not run again
    assert (evidence / "y.side").read_text() == "y\n"
    attempts = _attempts(fleet.db, run_id)
    assert sorted(attempts) == [("x", 1), ("y", 1)]
    assert all(host == "m1" and result["passed"] for host, _, result in attempts.values())
    check_replay(fleet.db, run_id, drv)


def test_resume_waits_for_an_attempt_still_running_longer_than_the_lease(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("m1")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, ready, go = evidence / "side.log", evidence / "ready", evidence / "go"
    task = (f'echo "start $STEPLEDGER_ATTEMPT" >> {side}; touch {ready};'
            f' for i in $(seq 1200); do [ -e {go} ] && break; sleep 0.05; done;'
            f' echo "end $STEPLEDGER_ATTEMPT" >> {side}')  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [task]},
        {"id": "y", "tasks": [f"echo y >> {evidence}/y.side"], "depends_on": ["x"]},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv, "--no-takeover")
    wait_for(ready.exists, "attempt 1 of x to start on m1")
    proc.kill()
    _, _, run_id = _finish(proc)
    output = tmp_path / "resume.out"
    with output.open("wb") as out:
        resumer = subprocess.Popen([*STEPLEDGER, "resume", run_id, "--db", fleet.db], cwd=drv, stdout=out,
                                   stderr=subprocess.STDOUT, env=driver_env())  # fmt: skip
    wait_for(lambda: "still runs on m1" in output.read_text(), "the resume to wait for x")
    # Longer than any lease: the old driver's has run out, and the waiting resume holds none yet.
    live_leases = "SELECT 1 FROM run_leases WHERE expires_at > extract(epoch FROM now())"
    wait_for(lambda: not query(fleet.db, live_leases), "every lease to run out")
    go.touch()
    assert resumer.wait(timeout=120) == 0, output.read_text()
    assert side.read_text().splitlines() == ["start 1", "end 1"]  # awaited and kept, not run again
    assert (evidence / "y.side").read_text() == "y\n"
    check_replay(fleet.db, run_id, drv)


def test_a_queued_attempt_of_a_dead_driver_is_fenced_and_retried_by_resume(
    fleet: Fleet, tmp_path: Path
) -> None:
    drv = tmp_path / "driver"
    drv.mkdir()
    side = tmp_path / "side.log"
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [f'echo "ran $STEPLEDGER_ATTEMPT" >> {side}'],
         "circuit_breaker": {"max_attempts": 1}},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv, "--no-takeover")  # no worker yet: the job waits in the queue
    wait_for(lambda: query(fleet.db, "SELECT 1 FROM procrastinate_jobs WHERE status = 'todo'"), "x's job")
    proc.kill()
    _, _, run_id = _finish(proc)
    resumer = subprocess.Popen(
        [*STEPLEDGER, "resume", run_id, "--db", fleet.db], cwd=drv, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=driver_env(),
    )  # fmt: skip
    wait_for(lambda: _attempts(fleet.db, run_id).get(("x", 1), ("", ""))[1] == "done", "x.1 fenced")
    fleet.start("m1")  # takes the stale job of attempt 1 (runs nothing), then attempt 2
    out, _ = resumer.communicate(timeout=120)
    assert resumer.returncode == 0, out
    assert side.read_text() == "ran 2\n"  # attempt 1 never ran; the fence made sure
    attempts = _attempts(fleet.db, run_id)
    assert attempts["x", 1][2]["reason"] == "interrupted" and attempts["x", 2][2]["passed"]
    check_replay(fleet.db, run_id, drv)


def test_every_worker_dies_then_one_comes_back_and_the_run_completes(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1")
    fleet.start("m2")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side = evidence / "side.log"
    task = (f'echo "start $STEPLEDGER_STEP_ID $STEPLEDGER_ATTEMPT" >> {side};'
            f' if [ "$STEPLEDGER_ATTEMPT" = 1 ]; then touch {evidence}/$STEPLEDGER_STEP_ID; sleep 30; fi;'
            f' echo "end $STEPLEDGER_STEP_ID $STEPLEDGER_ATTEMPT" >> {side}')  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "a", "tasks": [task]}, {"id": "b", "tasks": [task]}])
    proc = driver(fleet.db, ws, drv)
    wait_for(lambda: (evidence / "a").exists() and (evidence / "b").exists(), "a and b to start")
    fleet.kill_machine("m1")
    fleet.kill_machine("m2")
    # Both attempts are found dead and fenced while no worker is alive; their retries wait.
    wait_for(lambda: {k for k, v in _attempts(fleet.db, _run_id(fleet.db)).items() if v[1] == "done"}
             == {("a", 1), ("b", 1)}, "both attempts fenced")  # fmt: skip
    fleet.start("m3")
    code, out, run_id = _finish(proc)
    assert code == 0, out
    lines = sorted(side.read_text().splitlines())
    assert lines == ["end a 2", "end b 2", "start a 1", "start a 2", "start b 1", "start b 2"]
    attempts = _attempts(fleet.db, run_id)
    assert {attempts[s, 1][2]["reason"] for s in "ab"} == {"interrupted"}
    assert {attempts[s, 2][0] for s in "ab"} == {"m3"}
    check_replay(fleet.db, run_id, drv)


def test_cancel_stops_an_attempt_running_on_a_worker(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, ready = evidence / "side.log", evidence / "ready"
    task = f"echo start >> {side}; touch {ready}; sleep 30; echo end >> {side}"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [task]}])
    proc = driver(fleet.db, ws, drv)
    wait_for(ready.exists, "x to start")
    run_id = _run_id(fleet.db)
    cancelled = cli(fleet.db, "cancel", run_id, cwd=drv)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    code, out, _ = _finish(proc)
    assert code == 1 and "cancelled" in out, out
    attempts = _attempts(fleet.db, run_id)
    assert attempts["x", 1][0] == "m1" and attempts["x", 1][2]["reason"] == "cancelled"
    # The attempt's process was killed on its worker: it never wrote its end line.
    assert side.read_text() == "start\n"
    status = cli(fleet.db, "status", run_id, "--json", cwd=drv)
    assert '"cancelled"' in status.stdout


@pytest.mark.parametrize("how", ["grace period over", "second signal"])
def test_a_stopped_worker_hands_its_attempt_back_interrupted(fleet: Fleet, tmp_path: Path, how: str) -> None:
    fleet.start("m1", "--grace", "1" if how == "grace period over" else "600")
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, ready = evidence / "side.log", evidence / "ready"
    task = (f'echo "start $STEPLEDGER_ATTEMPT $STEPLEDGER_HOSTNAME" >> {side};'
            f' if [ "$STEPLEDGER_ATTEMPT" = 1 ]; then touch {ready}; sleep 60; fi;'
            f' echo "end $STEPLEDGER_ATTEMPT" >> {side}')  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [task], "circuit_breaker": {"max_attempts": 1}}])
    proc = driver(fleet.db, ws, drv)
    wait_for(ready.exists, "attempt 1 to start on m1")
    m1 = fleet.workers["m1"]
    m1.send_signal(signal.SIGTERM)
    if how == "second signal":
        wait_for(lambda: "signal again" in fleet.output("m1"), "m1 to say it is stopping")
        m1.send_signal(signal.SIGTERM)
    assert m1.wait(timeout=60) == 0
    assert not session_members(m1.pid)  # nothing of the attempt outlived its worker
    fleet.start("m2")
    code, out, run_id = _finish(proc)
    assert code == 0, out
    assert side.read_text().splitlines() == ["start 1 m1", "start 2 m2", "end 2"]
    attempts = _attempts(fleet.db, run_id)
    assert attempts["x", 1][0] == "m1" and attempts["x", 1][2]["reason"] == "interrupted"
    assert attempts["x", 2][0] == "m2" and attempts["x", 2][2]["passed"]


def test_a_stopped_worker_lets_a_running_attempt_finish(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1")  # the default grace period
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    side, ready, go = evidence / "side.log", evidence / "ready", evidence / "go"
    task = (f"echo start >> {side}; touch {ready}; for i in $(seq 1200); do [ -e {go} ] && break; sleep 0.05;"
            f" done; echo end >> {side}")  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [task]}])
    proc = driver(fleet.db, ws, drv)
    wait_for(ready.exists, "x to start on m1")
    m1 = fleet.workers["m1"]
    m1.send_signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in fleet.output("m1"), "m1 to say it is stopping")
    go.touch()
    assert m1.wait(timeout=60) == 0
    code, out, run_id = _finish(proc)
    assert code == 0, out
    assert side.read_text() == "start\nend\n"
    assert _attempts(fleet.db, run_id)["x", 1][2]["passed"]


def test_cancel_withdraws_an_attempt_no_worker_took(fleet: Fleet, tmp_path: Path) -> None:
    drv = tmp_path / "driver"
    drv.mkdir()
    side = tmp_path / "side.log"
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [f"echo ran >> {side}"]}])
    proc = driver(fleet.db, ws, drv)  # no worker: the job waits
    wait_for(lambda: query(fleet.db, "SELECT 1 FROM procrastinate_jobs WHERE status = 'todo'"), "x's job")
    run_id = _run_id(fleet.db)
    cancelled = cli(fleet.db, "cancel", run_id, cwd=drv)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    code, out, _ = _finish(proc)
    assert code == 1 and "cancelled" in out, out
    assert _attempts(fleet.db, run_id)["x", 1][2]["reason"] == "cancelled"
    assert query(fleet.db, "SELECT status FROM procrastinate_jobs") == [("cancelled",)]
    fleet.start("m1")  # nothing is left for it to run
    assert not side.exists()


def test_fleet_attempts_shows_an_attempt_waiting_for_a_worker_then_where_it_ran(
    fleet: Fleet, tmp_path: Path
) -> None:
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": ["true"]}])
    proc = driver(fleet.db, ws, drv)  # no worker yet
    wait_for(lambda: query(fleet.db, "SELECT 1 FROM procrastinate_jobs WHERE status = 'todo'"), "x's job")
    run_id = _run_id(fleet.db)
    waiting = cli(fleet.db, "fleet", "attempts", run_id, cwd=drv)
    assert waiting.returncode == 0, waiting.stderr
    assert "waiting for a worker on queue default" in waiting.stdout
    fleet.start("m1")
    code, out, _ = _finish(proc)
    assert code == 0, out
    shown = cli(fleet.db, "fleet", "attempts", run_id, "--json", cwd=drv)
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(r["step_id"], r["attempt"], r["host"], r["state"], r["passed"]) for r in rows] == [
        ("x", 1, "m1", "done", True)
    ]


def test_fleet_log_shows_an_attempts_log_from_any_machine_capped_to_its_end(
    fleet: Fleet, tmp_path: Path
) -> None:
    m1 = fleet.start("m1", env_extra={"STEPLEDGER_FLEET_LOG_BYTES": "200"})
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(
        drv / "ws.json", [{"id": "x", "tasks": ["printf 'x%.0s' $(seq 1000); echo; echo THE END"]}]
    )
    code, out, run_id = _finish(driver(fleet.db, ws, drv))
    assert code == 0, out
    shutil.rmtree(m1 / ".stepledger")  # the worker's own copy is gone: the database's is read
    shown = cli(fleet.db, "fleet", "log", run_id, "x", cwd=drv)
    assert shown.returncode == 0, shown.stderr
    assert "-- x attempt 1" in shown.stderr
    assert (
        shown.stdout.startswith("[stepledger: the first ") and "stay on the worker's machine]" in shown.stdout
    )
    assert "THE END\nexit 0 in" in shown.stdout
    assert len(shown.stdout.split("]\n", 1)[1]) == 200  # the cap, the log's end kept
    missing = cli(fleet.db, "fleet", "log", run_id, "nope", cwd=drv)
    assert missing.returncode == 2 and "no log of step 'nope'" in missing.stderr, missing.stderr


def test_the_fleet_needs_the_log_in_postgresql(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    ws = workstream(tmp_path / "ws.json", [{"id": "a", "tasks": ["true"]}])
    run = cli(db, "run", str(ws), "--on-workers", cwd=tmp_path)
    assert run.returncode == 2
    assert "needs the log in PostgreSQL" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / ".stepledger").exists()  # refused before anything was made
    assert not (tmp_path / "ledger.db").exists()
    worker = cli(db, "worker", cwd=tmp_path)
    assert worker.returncode == 2
    assert "needs the log in PostgreSQL" in worker.stderr and "Traceback" not in worker.stderr


def test_git_isolation_is_refused_on_workers(pg_url: str, tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    ws = workstream(tmp_path / "ws.json", [{"id": "a", "tasks": ["true"]}])
    data = json.loads(ws.read_text())
    data["execution"]["isolation"] = "worktree"
    ws.write_text(json.dumps(data))
    run = cli(pg_url, "run", str(ws), "--on-workers", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "cannot be used with --on-workers" in run.stderr and "Traceback" not in run.stderr
    assert query(pg_url, "SELECT 1 FROM runs") == []  # nothing recorded


@pytest.mark.parametrize("setting", ["STEPLEDGER_FLEET_STALL_TIMEOUT", "STEPLEDGER_FLEET_LOG_BYTES"])
def test_a_bad_fleet_setting_is_refused_at_start(pg_url: str, tmp_path: Path, setting: str) -> None:
    env = {**driver_env(), setting: "soon"}
    worker = subprocess.run([*STEPLEDGER, "worker", "--db", pg_url, "--workdir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert worker.returncode == 2, worker.stdout + worker.stderr
    assert f"{setting}='soon' is not a number" in worker.stderr and "Traceback" not in worker.stderr


@pytest.mark.parametrize("where", ["no server", "no such database"])
def test_an_unreachable_fleet_database_is_one_line(tmp_path: Path, pg_url: str, where: str) -> None:
    """`worker` and `run --on-workers` on a database they cannot reach: one line naming it (without
    its password), exit 2, no traceback."""
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = (
        f"postgresql+psycopg://postgres:s3cr3t-pw@127.0.0.1:{port}/x"
        if where == "no server"
        else make_url(pg_url)
        .set(password="s3cr3t-pw", database="stepledger_no_such_db")
        .render_as_string(False)
    )
    ws = workstream(tmp_path / "ws.json", [{"id": "a", "tasks": ["true"]}])
    for args in (["worker"], ["run", str(ws), "--on-workers"]):
        done = cli(db, *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot use the database" in lines[0], (args, done.stderr)
        assert "s3cr3t-pw" not in done.stderr + done.stdout and "***" in lines[0]
