"""PostgreSQL going away in the middle of a run.

A restart, of a private throw-away cluster: the reactor carries on or exits cleanly, and resume
completes the run. Connections cut by the server again and
again (`pg_terminate_backend`, the reactor's and its heartbeat's, mid-append too): shorter than the
lease, so the run rides them out — every append retried with its own event ids, nothing twice.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from crashkit import CrashRun, Spec, count, soak
from dbs import pg_admin_url
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl on a free port): the only server a test
    restarts. The server a developer or CI uses is never stopped or restarted."""

    def __init__(self) -> None:
        version = sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())[-1]
        self.bin = Path("/usr/lib/postgresql") / version / "bin"
        # initdb refuses to run as root; the cluster's folder must be reachable by its owner.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        self.data = Path(tempfile.mkdtemp(prefix="stepledger-pg-", dir="/tmp"))
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.pg_ctl("start")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / program), *args], check=True, timeout=120,
                       capture_output=True)  # fmt: skip

    def pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w",
                  *extra, action)  # fmt: skip

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


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
    stop, cuts = threading.Event(), []
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
