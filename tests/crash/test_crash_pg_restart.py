"""PostgreSQL going away in the middle of a run.

A restart, of a private throw-away cluster: the reactor carries on or exits cleanly, and resume
completes the run. Connections cut by the server again and
again (`pg_terminate_backend`, the reactor's and its heartbeat's, mid-append too): shorter than the
lease, so the run rides them out — every append retried with its own event ids, nothing twice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
from crashkit import CrashRun, Spec, count, soak
from dbs import pg_admin_url
from private_cluster import PrivateCluster
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


def test_postgres_restart_mid_run(
    tmp_path: Path, private_cluster: PrivateCluster, tally: dict[str, int]
) -> None:
    chain = [Spec("s1", (), 0.3)] + [Spec(f"s{i}", (f"s{i - 1}",), 0.3) for i in range(2, 8)]
    run = CrashRun(tmp_path, private_cluster.url, chain)
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.passed", "s2")
    private_cluster.pg_ctl("restart")
    code = run.finish(proc)
    output = run.output()
    if code != 0:
        run.resume_to_end()
    run.check(reactor_only=False)
    count(tally, run)
    # It either rode out the restart or stopped with a clean error (no traceback) naming the database.
    assert code == 0 or (code in (1, 2) and "Traceback" not in output), output


def _cut_connections(database: str, stop: threading.Event, cuts: list[int]) -> None:
    """Terminate every session on `database` every few tens of milliseconds until `stop`."""
    with psycopg.connect(pg_admin_url("postgres").replace("+psycopg", ""), autocommit=True) as admin:
        while not stop.wait(0.03):  # a load generator's pace, not a synchronisation
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
            cuts.append(int(killed[0]) if killed else 0)


@pytest.mark.parametrize("iteration", range(3))
def test_connections_cut_again_and_again_are_ridden_out(
    tmp_path: Path, pg_url: str, tally: dict[str, int], iteration: int, request: pytest.FixtureRequest
) -> None:
    steps = 12 if soak(request) else 6
    chain = [Spec("s1", (), 0.2)] + [Spec(f"s{i}", (f"s{i - 1}",), 0.2) for i in range(2, steps + 1)]
    run = CrashRun(tmp_path, pg_url, chain)
    # The production lease (5 s), not the suite's short one: under a storm of cuts on a loaded
    # machine, 2 s could pass without one commit getting through, and the run would stop cleanly
    # (lease lost) instead of riding the storm out, which is what this test is about.
    run.faults["STEPLEDGER_LEASE_SECONDS"] = "5"
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.started", "s1")  # the run is recorded and holds its lease
    stop = threading.Event()
    cuts: list[int] = []  # how many sessions each cut ended
    cutter = threading.Thread(target=_cut_connections, args=(make_url(pg_url).database, stop, cuts))
    cutter.start()
    try:
        code = run.finish(proc)
    finally:
        stop.set()
        cutter.join()
    output = run.output()
    assert code == 0, output
    assert sum(cuts) > 0, "no connection was cut: the test tested nothing"
    assert "the database is back" in output, output
    run.check()  # each step ran and completed once; replay --verify agrees with the projections
    count(tally, run)
