"""A run's orchestrator.log from any machine (docs/workers.md, "Logs from any machine"): each driver
of a run on workers streams its orchestrator.log into the database, one part per driver, and
`stepledger logs RUN [--follow]` reads that copy — from a folder with no file of the run, after a
takeover by another machine, and for `run --on-workers` whose driver is the submitting machine.

Real `stepledger worker`s (fleetkit.py), real drivers, `logs` run from another folder.
"""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    cli,
    driver,
    driver_env,
    driving_host,
    evidence_task,
    query,
    run_status,
    wait_for,
    workstream,
)
from sqlalchemy.engine import make_url

from stepledger.engine.fleet import schema
from stepledger.engine.fleet.log_stream import RunLogStream
from stepledger.engine.fleet.reading import FleetLogs
from stepledger.engine.fleet.settings import conninfo

pytestmark = pytest.mark.postgres

SECRET = "run-log-s3cret"
PART = re.compile(r"\[stepledger: the run's driver (\d+), on (\S+)\]\n")


def _logs(db: str, run_id: str, cwd: Path) -> str:
    shown = subprocess.run([*STEPLEDGER, "logs", run_id, "--db", db], cwd=cwd, capture_output=True,
                           text=True, env=driver_env(), timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def _parts(text: str) -> list[tuple[str, str]]:
    """(host, text) of each driver's part of a printed run log, in order; numbered 1, 2, ..."""
    pieces = PART.split(text)
    assert pieces[0] == "", text  # nothing before the first part's line
    numbers = [int(n) for n in pieces[1::3]]
    assert numbers == sorted(numbers), text
    return list(zip(pieces[2::3], pieces[3::3], strict=True))


def _local_log(workdir: Path, run_id: str) -> str:
    return (workdir / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()


class Follower:
    """`stepledger logs RUN --follow` from `cwd`, its stdout read by a thread as it comes."""

    def __init__(self, db: str, run_id: str, cwd: Path) -> None:
        self.proc = subprocess.Popen([*STEPLEDGER, "logs", run_id, "--follow", "--db", db], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=driver_env())  # fmt: skip
        self.text = ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.text += line

    def finish(self, timeout: float = 30) -> int:
        """Its exit status once it ended by itself (fails if it does not within `timeout`)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._thread.join(timeout=10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        return code


def test_a_submitted_run_s_log_from_another_machine_across_a_takeover(fleet: Fleet, tmp_path: Path) -> None:
    # A password in the URL (the test server trusts any): it must reach neither the files nor the copy.
    fleet.db = make_url(fleet.db).set(password=SECRET).render_as_string(hide_password=False)
    fleet.start("a1", "--drive", "0", wait=False)  # runs the attempts, drives nothing
    for host in ("d1", "d2"):
        fleet.start(host, "--queue", "ctl", wait=False)  # drive only: no attempt is on queue ctl
    fleet.serving("a1", "d1", "d2")
    side, go = tmp_path / "side.log", tmp_path / "go"
    drv, elsewhere = tmp_path / "driver", tmp_path / "elsewhere"
    drv.mkdir()
    elsewhere.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [evidence_task(side, 0, gate=go)]},
        {"id": "y", "tasks": [evidence_task(side, 0.1)], "depends_on": ["x"]},
    ])  # fmt: skip
    done = cli(fleet.db, "submit", str(ws), "--queue", "ctl", cwd=drv)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.strip()
    wait_for(Path(f"{side}.x.ready").exists, "x to run on a1")
    first = wait_for(lambda: driving_host(fleet.db, run_id), "a worker to drive the run")
    second = ({"d1", "d2"} - {first}).pop()
    first_log = _local_log(fleet.root / first, run_id)
    assert "[x] Starting..." in first_log
    # Read from a folder that has no file of the run, while the first driver drives it: its lines
    # as its file has them, once they are streamed.
    part_line = f"[stepledger: the run's driver 1, on {first}]\n"
    wait_for(lambda: _logs(fleet.db, run_id, elsewhere) == part_line + _local_log(fleet.root / first, run_id),
             "the first driver's lines in the database")  # fmt: skip
    assert not (elsewhere / ".stepledger").exists()
    follow = Follower(fleet.db, run_id, elsewhere)
    wait_for(lambda: first_log in follow.text, "--follow to print the first driver's lines")
    first_log = _local_log(fleet.root / first, run_id)
    fleet.kill_machine(first)
    wait_for(lambda: "still runs on a1" in fleet.output(second), "the other worker to take the run over")
    go.touch()
    wait_for(lambda: run_status(fleet.db, run_id) not in ("", "running"), "the run to end")
    assert run_status(fleet.db, run_id) == "passed"
    assert follow.finish() == 0, follow.stderr  # it ends by itself when the run ends
    shown = _logs(fleet.db, run_id, elsewhere)
    # Each driver's lines, in the order they drove the run, exactly as each one's file has them:
    # the second's to its last line (the run's end, written after its pool stopped).
    second_log = _local_log(fleet.root / second, run_id)
    assert _parts(shown) == [(first, first_log), (second, second_log)]
    assert re.search(rf"run {run_id} resumed by pid \d+ on {second}\n", second_log)
    assert second_log.splitlines()[-1].endswith("passed") and "[y] Complete" in second_log
    assert follow.text == shown  # followed from the first driver's lines to the second's last
    copy = query(fleet.db, "SELECT string_agg(encode(data, 'escape'), '') FROM stepledger_fleet_log")
    assert SECRET not in str(copy) + shown + follow.stderr


def test_run_on_workers_log_read_elsewhere_and_followed_to_its_last_line(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("m1")
    drv, elsewhere = tmp_path / "driver", tmp_path / "elsewhere"
    drv.mkdir()
    elsewhere.mkdir()
    go = tmp_path / "go"
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [f"while [ ! -e {go} ]; do sleep 0.05; done"]},
        {"id": "b", "tasks": ["true"], "depends_on": ["a"]},
    ])  # fmt: skip
    run = driver(fleet.db, ws, drv)  # this machine drives it: `run --on-workers`
    try:
        run_id = str(wait_for(lambda: list((drv / ".stepledger" / "runs").glob("run-*")), "the run")[0].name)
        wait_for(lambda: "[a] Starting..." in _logs(fleet.db, run_id, elsewhere), "a's start in the database")
        follow = Follower(fleet.db, run_id, elsewhere)
        wait_for(lambda: "[a] Starting..." in follow.text, "--follow to print what was there")
        assert follow.proc.poll() is None
        go.touch()
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 0, out
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert follow.finish() == 0, follow.stderr
    mine = _local_log(drv, run_id)
    assert mine.splitlines()[-1].endswith("passed")
    assert _parts(_logs(fleet.db, run_id, elsewhere)) == [("driver", mine)]
    assert _parts(follow.text) == [("driver", mine)]
    # On the driving machine too, the database's copy (every driver's lines) is what is shown.
    assert _parts(_logs(fleet.db, run_id, drv)) == [("driver", mine)]


def test_a_second_driver_in_the_same_folder_streams_only_its_own_lines(pg_url: str, tmp_path: Path) -> None:
    """The same work directory drives the run twice (a worker took it over again): its file holds
    the first driver's lines and then the second's; the second part in the database holds only the
    second's, and the cap keeps each part's end with a line saying where the rest is."""
    db = conninfo(pg_url)
    with psycopg.connect(db, autocommit=True) as conn:
        schema.install(conn)
    path = tmp_path / "orchestrator.log"
    path.write_text("first driver: line 1\nfirst driver: line 2\n")
    first = RunLogStream(db, "run-x", str(path), "m1", cap=1 << 20)
    with psycopg.connect(db, autocommit=True) as conn:
        first.begin(conn)
    first.close()
    with path.open("a") as f:
        f.write("second driver: line 1\n" + "second driver: more\n" * 10)
    second = RunLogStream(db, "run-x", str(path), "m1", cap=60)
    with psycopg.connect(db, autocommit=True) as conn:
        second.begin(conn)
    second.close()
    logs = FleetLogs(pg_url)  # no run of that id is recorded: its parts are read directly
    try:
        log = logs.run_log("run-x", lambda: "passed", lambda: False)
        assert log is not None
        text = b"".join(log.chunks()).decode()
        assert log.ended() == ""  # the run ended and its last part is closed
    finally:
        logs.close()
    parts = _parts(re.sub(r"\[stepledger: the first [^\]]*\]\n", "", text))
    assert parts[0] == ("m1", "first driver: line 1\nfirst driver: line 2\n")
    written = "second driver: line 1\n" + "second driver: more\n" * 10
    assert parts[1] == ("m1", written[-60:])
    dropped = len(written) - 60
    assert f"[stepledger: the first {dropped:,} bytes of this log are not kept in the database" in text
    assert "they stay on its driver's machine]" in text
