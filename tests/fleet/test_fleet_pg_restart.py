"""PostgreSQL restarting under a fleet, on a private throw-away cluster (never the server in use).

A run driven by workers is under way — its driver a worker's child process, its attempts on other
workers — when the database restarts. The fleet rides it out (a worker that stopped would be started
again, as `Restart=always` would, and the test fail): the run completes, no attempt runs twice, none
is lost, and `replay --verify` passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from fleetkit import (
    Fleet,
    check_evidence,
    check_no_overlap,
    check_replay,
    cli,
    driving_host,
    evidence_task,
    fleet_state,
    run_status,
    wait_for,
    workstream,
)
from private_cluster import PrivateCluster

pytestmark = pytest.mark.postgres

# The production heartbeat, stall timeout and lease: a restart takes a second or two, and a worker
# silent longer than the stall timeout would be taken for dead (its attempt retried while it may
# still run: the documented trade-off), which is not what this test is about.
PRODUCTION = {"STEPLEDGER_FLEET_HEARTBEAT": "2", "STEPLEDGER_FLEET_STALL_TIMEOUT": "6",
              "STEPLEDGER_LEASE_SECONDS": "5"}  # fmt: skip


@pytest.fixture
def fleet(fleet_on_private_cluster: Fleet) -> Fleet:
    return fleet_on_private_cluster


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
    private_cluster: PrivateCluster, fleet: Fleet, tmp_path: Path, mode: str
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
    done = cli(private_cluster.url, "submit", str(ws), "--queue", "ctl", cwd=drv)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    wait_for(lambda: side.exists() and side.read_text().count("end") >= 2, "two steps to pass")
    wait_for(lambda: driving_host(private_cluster.url, run_id), "a worker to drive the run")
    private_cluster.pg_ctl("restart", "-m", mode)

    def ended() -> str:
        _keep_serving(fleet, hosts, extra)
        try:
            status = run_status(private_cluster.url, run_id)
        except psycopg.OperationalError:  # still restarting
            return ""
        return status if status not in ("", "running") else ""

    try:
        status = wait_for(ended, "the run to end", timeout=180)
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}\n{fleet_state(private_cluster.url, run_id, fleet)}") from None
    assert status == "passed", fleet_state(private_cluster.url, run_id, fleet)
    check_evidence(side, ids)
    check_no_overlap(private_cluster.url, run_id)
    check_replay(private_cluster.url, run_id, drv)
    ours = re.compile(r'File "[^"]*/(engine|cli|store|events)/')  # a frame of stepledger's code
    for host in hosts:
        output = fleet.output(host)
        # Nothing of ours failed unhandled (Procrastinate logs its own errors with their tracebacks);
        # a worker that stopped said why, in one line.
        assert not ours.search(output), output
        # Every worker rides the restart out (engine/fleet/ride_out.py), those that drive runs
        # too (their drives' Procrastinate worker goes through it as well): none stopped.
        assert output.count("serving") == 1, output
        assert "stopped: the database went away" not in output, output
