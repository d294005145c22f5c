"""A PostgreSQL restart in the middle of a run: the reactor carries on or exits cleanly, and resume
completes the run. The server is started again whatever happens (other tests need it)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import CrashRun, Spec, count

pytestmark = pytest.mark.postgres
CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect"]


def _version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]


def _online() -> bool:
    status = subprocess.run([*CLUSTER, _version(), "main", "status"], capture_output=True, timeout=30)
    return status.returncode == 0


@pytest.fixture
def restartable() -> Iterator[None]:
    """Make sure the server is up again after the test, even when it failed half way."""
    yield
    if not _online():
        subprocess.run([*CLUSTER, _version(), "main", "start"], check=True, timeout=120)


def test_postgres_restart_mid_run(
    tmp_path: Path, pg_url: str, restartable: None, tally: dict[str, int]
) -> None:
    chain = [Spec("s1", (), 0.3)] + [Spec(f"s{i}", (f"s{i - 1}",), 0.3) for i in range(2, 8)]
    run = CrashRun(tmp_path, pg_url, chain)
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.passed", "s2")
    subprocess.run([*CLUSTER, _version(), "main", "restart"], check=True, timeout=120)
    code = run.finish(proc)
    output = run.output()
    if code != 0:
        run.resume_to_end()
    run.check(reactor_only=False)
    count(tally, run)
    # It either rode out the restart or stopped with a clean error (no traceback) naming the database.
    assert code == 0 or (code in (1, 2) and "Traceback" not in output), output
