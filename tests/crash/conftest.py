"""Fixtures of the crash suite: the databases it runs on and the tally of kill iterations it prints."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def crash_url(request: pytest.FixtureRequest) -> str:
    """A fresh database of each kind the crash suite runs on: SQLite, PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[dict[str, int]]:
    """Kill iterations of this module and how they ended, printed when the module is done."""
    counts = {"iterations": 0, "kills": 0, "processes": 0, "verified": 0}
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = (f"crash tally {Path(str(request.node.fspath)).name}: {counts['iterations']} iterations, "
            f"{counts['kills']} SIGKILLs, {counts['processes']} stepledger processes, "
            f"{counts['verified']} runs verified")  # fmt: skip
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # a teardown's output is captured otherwise
            reporter.write_line(line)
    stats = os.environ.get("STEPLEDGER_CRASH_STATS")
    if stats:
        with open(stats, "a", encoding="utf-8") as f:
            f.write(json.dumps({"module": Path(str(request.node.fspath)).name, **counts}) + "\n")
