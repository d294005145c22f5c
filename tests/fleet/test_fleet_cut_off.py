"""A worker cut off from the database (engine/fleet/worker.py, engine/fleet/ride_out.py `Heartbeat`):
what it does when the database is back and its attempt was fenced meanwhile (`_database_back`), and
when it finds it was taken for dead (`_forgotten`).

- Cut off, fenced, back: on a private throw-away cluster a worker's TCP connections are refused
  (pg_hba.conf, reloaded) and broken, as a network partition of its machine would, while the
  driver and the test reach the database by its Unix socket. The driver sees the worker's
  heartbeat stop and fences its running attempt *interrupted*; once the worker's connections are
  let through again it must kill that attempt (a retry may be running elsewhere by then).
- The same reaction, one attempt at a time: only attempts the ledger has settled are stopped, and
  the fetch loop is woken (a job enqueued meanwhile was notified to nobody).
- Taken for dead: the worker's `procrastinate_workers` row deleted while it runs an attempt, as
  another worker's start prunes a stalled worker's: the worker kills the attempt and exits 1 with
  one line, no traceback.

FAST settings (fleetkit): a 0.3 s heartbeat, a 1.5 s stall timeout.
"""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from fleetkit import Fleet, attempt_rows, driver, query, wait_for, workstream
from private_cluster import PrivateCluster

from stepledger.engine.execution.spec import AttemptSpec
from stepledger.engine.fleet import jobs, ledger, schema
from stepledger.engine.fleet.settings import DEFAULT_QUEUE, conninfo
from stepledger.engine.fleet.worker import FleetWorker

pytestmark = pytest.mark.postgres

LONG = 120  # seconds a long attempt would run if nothing stopped it: far beyond every wait below


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _by_socket(cluster: PrivateCluster) -> str:
    """The cluster's URL through its Unix socket: untouched by a rule on TCP connections."""
    return f"postgresql+psycopg://postgres@/postgres?host={cluster.data}&port={cluster.port}"


def _refused(url: str) -> bool:
    try:
        psycopg.connect(conninfo(url)).close()
    except psycopg.OperationalError as error:
        return "rejects connection" in str(error)
    return False


def _cut_tcp_off(cluster: PrivateCluster, local: str) -> str:
    """Refuse TCP connections (the workers'), then break those open; pg_hba.conf as it was."""
    hba = cluster.data / "pg_hba.conf"
    before = hba.read_text()
    hba.write_text(f"host all all 127.0.0.1/32 reject\n{before}")
    query(local, "SELECT pg_reload_conf()")
    wait_for(lambda: _refused(cluster.url), "the server to refuse TCP connections")
    query(local, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_addr IS NOT NULL")
    return before


def _let_tcp_in(cluster: PrivateCluster, local: str, hba: str) -> None:
    (cluster.data / "pg_hba.conf").write_text(hba)
    query(local, "SELECT pg_reload_conf()")


def test_an_attempt_fenced_while_its_worker_was_cut_off_is_stopped_once_the_database_is_back(
    private_cluster: PrivateCluster, fleet_on_private_cluster: Fleet, tmp_path: Path
) -> None:
    fleet = fleet_on_private_cluster
    local = _by_socket(private_cluster)  # the driver's and the test's connections
    fleet.start("a1", "--drive", "0")  # by TCP; one slot: a retry runs here only once s1.1 is gone
    side = tmp_path / "side.log"
    # Attempt 1 is the long process itself (exec: its pid is the shell's); attempt 2 ends at once.
    task = (f'echo "start $STEPLEDGER_ATTEMPT $STEPLEDGER_HOSTNAME $$" >> {side};'
            f' if [ "$STEPLEDGER_ATTEMPT" = 1 ]; then exec sleep {LONG}; fi;'
            f' echo "end $STEPLEDGER_ATTEMPT" >> {side}')  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    run = driver(local, workstream(drv / "ws.json", [{"id": "s1", "tasks": [task]}]), drv)
    said = "s1.1 was handed back interrupted while cut off: stopped here"
    try:
        line = wait_for(lambda: side.exists() and side.read_text().strip(), "s1.1 to start on a1")
        assert line.split()[:3] == ["start", "1", "a1"], line
        pid = int(line.split()[3])
        (run_id,) = {row[0] for row in query(local, "SELECT run_id FROM stepledger_fleet_attempts")}
        hba = _cut_tcp_off(private_cluster, local)
        try:
            # The driver takes a1 for dead (no heartbeat for a stall timeout) and fences s1.1.
            wait_for(lambda: attempt_rows(local, run_id)[0][3] == "done", "the driver to fence s1.1")
            assert _alive(pid), "s1.1 stopped while a1 was cut off"  # a1 cannot know yet
            assert said not in fleet.output("a1")
        finally:
            _let_tcp_in(private_cluster, local, hba)
        # Back: a1 reads the ledger and kills s1.1, long before it would have ended.
        wait_for(lambda: not _alive(pid), "a1 to stop s1.1", timeout=30)
        wait_for(lambda: said in fleet.output("a1"), "a1 to say why", timeout=5)
        out, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, out + fleet.output("a1")
    # s1.1 never ended; its retry ran on a1 once a1 had stopped it, and passed.
    lines = [line.split()[:3] for line in side.read_text().splitlines()]
    assert lines == [["start", "1", "a1"], ["start", "2", "a1"], ["end", "2"]], lines
    rows = attempt_rows(local, run_id)
    assert [(row[1], row[3]) for row in rows] == [(1, "done"), (2, "done")], rows
    first, second = rows[0][4] or {}, rows[1][4] or {}
    # s1.1's verdict is the driver's fence (a1's late outcome was refused), s1.2's is a1's.
    assert first.get("reason") == "interrupted", first
    assert "stopped sending heartbeats" in first.get("output_excerpt", ""), first
    assert second.get("passed") is True, second
    output = fleet.output("a1")
    assert output.count("serving") == 1, output  # it rode the cut-off out: it did not stop
    # Nothing of ours failed unhandled: ending s1.1's job, which the driver had failed with its
    # fence, is no error (Procrastinate's own log lines may carry tracebacks of its own).
    assert not re.search(r'File "[^"]*/(engine|cli|store|events)/', output), output


def test_when_the_database_is_back_only_the_attempts_the_ledger_settled_are_stopped(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = FleetWorker(pg_url, tmp_path, 3, [], grace=None, drive=0)
    # Stand-ins for the pool and Procrastinate's worker: the two parts the call reaches.
    cancelled: list[tuple[tuple[str, str, int], str]] = []
    monkeypatch.setattr(
        worker, "pool", SimpleNamespace(cancel=lambda *key, reason: cancelled.append((key, reason)))
    )
    woken = threading.Event()
    monkeypatch.setattr(worker, "_procrastinate", SimpleNamespace(_new_job_event=woken))
    loop = asyncio.new_event_loop()
    worker._loop = loop
    # Fenced by the driver; still this worker's claim; not in the ledger (a claim still retried).
    fenced, claimed, unclaimed = ("run-b", "x", 1), ("run-b", "y", 1), ("run-b", "z", 2)
    for key in (fenced, claimed, unclaimed):
        worker._waiting[key] = Future()
    try:
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
            schema.install(conn)
            for job_id, key in enumerate((fenced, claimed), start=1):
                assert ledger.claim(conn, key, worker.host, worker.name, job_id)
            assert ledger.fence(conn, fenced, {"passed": False, "reason": "interrupted"})
            worker._database_back(conn)
        loop.call_soon(loop.stop)  # after the calls _database_back scheduled on the serving loop
        loop.run_forever()
    finally:
        loop.close()
    assert cancelled == [(fenced, "interrupted")], cancelled
    assert woken.is_set()  # the fetch loop looks for jobs enqueued while nobody listened
    err = capsys.readouterr().err
    assert f"stepledger worker {worker.name}: the database is back" in err
    assert "x.1 was handed back interrupted while cut off: stopped here" in err
    assert "y.1 was handed" not in err and "z.2 was handed" not in err


def test_a_worker_taken_for_dead_stops_its_attempts_and_exits_1_with_one_line(
    fleet: Fleet, tmp_path: Path
) -> None:
    # It also drives runs (the default): those stop with it. Its attempts would have a minute.
    fleet.start("a1", "--grace", "60")
    name = f"a1:{fleet.workers['a1'].pid}"
    pidfile = tmp_path / "attempt.pid"
    spec = AttemptSpec("run-f", "s1", 1, "shell", (f"echo $$ > {pidfile}; exec sleep {LONG}",), (),
                       str(tmp_path), {}, None, run_dir=str(tmp_path / ".stepledger/runs/run-f"))  # fmt: skip
    app = jobs.make_app(conninfo(fleet.db))
    with app.open():
        job_id = jobs.defer(app, spec, DEFAULT_QUEUE)
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "the attempt to start"))
    [(worker_id,)] = query(fleet.db, "SELECT worker_id FROM procrastinate_jobs WHERE id = %s", job_id)
    # Pruned, as another worker's start prunes a worker silent longer than the stall timeout.
    assert query(fleet.db, "DELETE FROM procrastinate_workers WHERE id = %s RETURNING id", worker_id)
    wait_for(lambda: not _alive(pid), "the attempt to be stopped", timeout=20)
    code = fleet.workers["a1"].wait(timeout=30)
    out = fleet.output("a1")
    assert code == 1, out
    assert "Traceback" not in out, out
    assert [line for line in out.splitlines() if line.startswith("error:")] == [out.splitlines()[-1]], out
    assert out.splitlines()[-1] == (
        f"error: stepledger worker {name} stopped: it was cut off from the database longer than the"
        " stall timeout and taken for dead (its attempts were handed back interrupted);"
        " start it again (a service manager with Restart=always does)"
    ), out
    assert f"stepledger worker {name}: taken for dead while cut off from the database: stopping" in out
    # The attempt was handed back: recorded interrupted, by this worker.
    rows = attempt_rows(fleet.db, "run-f")
    assert [(row[0], row[1], row[3], (row[4] or {}).get("reason")) for row in rows] == [
        ("s1", 1, "done", "interrupted")
    ], rows
