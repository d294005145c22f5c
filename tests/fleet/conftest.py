"""The fleet's fixture: worker processes standing for machines, each in its own folder, on PostgreSQL."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetkit import STEPLEDGER, Fleet
from private_cluster import PrivateCluster


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """Start workers with `fleet.start(...)`; every one still running is stopped at the end."""
    machines = tmp_path / "machines"
    machines.mkdir()
    workers = Fleet(pg_url, machines)
    yield workers
    workers.stop()


@pytest.fixture
def fleet_on_private_cluster(private_cluster: PrivateCluster, tmp_path: Path) -> Iterator[Fleet]:
    """Workers on a throw-away cluster of their own (a test that stops or restarts PostgreSQL),
    its log's schema made first; every worker still running is killed at the end."""
    machines = tmp_path / "machines"
    machines.mkdir()
    migrated = subprocess.run([*STEPLEDGER, "db", "upgrade", "--db", private_cluster.url],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    workers = Fleet(private_cluster.url, machines)
    yield workers
    for host, proc in workers.workers.items():
        if proc.poll() is None:
            workers.kill_machine(host)
