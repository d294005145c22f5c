"""PostgreSQL restarting under a fleet, on a private throw-away cluster (never the server in use).

A run driven by workers is under way — its driver a worker's child process, its attempts on other
workers — when the database restarts. The fleet rides it out, or a worker stops cleanly and is
started again (as `Restart=always` would): the run completes, no attempt runs twice, none is lost,
and `replay --verify` passes.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    check_evidence,
    check_no_overlap,
    cli,
    driving_host,
    evidence_task,
    run_status,
    wait_for,
    workstream,
)

pytestmark = pytest.mark.postgres

# The production heartbeat, stall timeout and lease: a restart takes a second or two, and a worker
# silent longer than the stall timeout would be taken for dead (its attempt retried while it may
# still run: the documented trade-off), which is not what this test is about.
PRODUCTION = {"STEPLEDGER_FLEET_HEARTBEAT": "2", "STEPLEDGER_FLEET_STALL_TIMEOUT": "6",
              "STEPLEDGER_LEASE_SECONDS": "5"}  # fmt: skip


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl on a free port), as tests/crash's: the only
    server a test restarts."""

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
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w",
                  *extra, action)  # fmt: skip

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    made = PrivateCluster()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def fleet(cluster: PrivateCluster, tmp_path: Path) -> Iterator[Fleet]:
    machines = tmp_path / "machines"
    machines.mkdir()
    migrated = subprocess.run([*STEPLEDGER, "db", "upgrade", "--db", cluster.url], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    workers = Fleet(cluster.url, machines)
    yield workers
    for host, proc in workers.workers.items():
        if proc.poll() is None:
            workers.kill_machine(host)


def _keep_serving(fleet: Fleet, hosts: tuple[str, ...], extra: dict[str, tuple[str, ...]]) -> list[str]:
    """Start again (as a service manager would) each worker that stopped; the hosts restarted."""
    restarted = []
    for host in hosts:
        if fleet.workers[host].poll() is not None:
            fleet.start(host, *extra[host], env_extra=PRODUCTION)
            restarted.append(host)
    return restarted


# The harsher restart (connections cut with no goodbye) in every run of the suite; the polite one
# (`-m fast`: sessions told to end) with --soak.
@pytest.mark.parametrize("mode", ["immediate", pytest.param("fast", marks=pytest.mark.slow)])
def test_a_fleet_rides_out_a_postgres_restart(
    cluster: PrivateCluster, fleet: Fleet, tmp_path: Path, mode: str
) -> None:
    extra = {"a1": ("--drive", "0", "--concurrency", "2"), "a2": ("--drive", "0", "--concurrency", "2"),
             "d1": ("--queue", "ctl"), "d2": ("--queue", "ctl")}  # fmt: skip
    hosts = tuple(extra)
    for host in hosts:
        fleet.start(host, *extra[host], env_extra=PRODUCTION, wait=False)
    fleet.serving(*hosts)
    side = tmp_path / "side.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    ids = [f"s{i}" for i in range(8)]
    steps = [{"id": sid, "tasks": [evidence_task(side, 0.8)], "depends_on": ids[max(0, n - 2) : n][:1]}
             for n, sid in enumerate(ids)]  # fmt: skip
    ws = workstream(drv / "ws.json", steps, max_workers=2)
    done = cli(cluster.url, "submit", str(ws), "--queue", "ctl", cwd=drv)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    wait_for(lambda: side.exists() and side.read_text().count("end") >= 2, "two steps to pass")
    wait_for(lambda: driving_host(cluster.url, run_id), "a worker to drive the run")
    cluster.pg_ctl("restart", "-m", mode)

    def ended() -> str:
        _keep_serving(fleet, hosts, extra)
        try:
            status = run_status(cluster.url, run_id)
        except psycopg.OperationalError:  # still restarting
            return ""
        return status if status not in ("", "running") else ""

    assert wait_for(ended, "the run to end", timeout=180) == "passed"
    check_evidence(side, ids)
    check_no_overlap(cluster.url, run_id)
    verify = cli(cluster.url, "replay", run_id, "--verify", cwd=drv)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    ours = re.compile(r'File "[^"]*/(engine|cli|store|events)/')  # a frame of stepledger's code
    for host in hosts:
        output = fleet.output(host)
        # Nothing of ours failed unhandled (Procrastinate logs its own errors with their tracebacks);
        # a worker that stopped said why, in one line.
        assert not ours.search(output), output
        stops = output.count("serving") - 1
        assert output.count("stopped: the database went away") == stops, output
