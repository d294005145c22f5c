"""The fleet's fixture: worker processes standing for machines, each in its own folder, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetkit import Fleet


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """Start workers with `fleet.start(...)`; every one still running is stopped at the end."""
    machines = tmp_path / "machines"
    machines.mkdir()
    workers = Fleet(pg_url, machines)
    yield workers
    workers.stop()
