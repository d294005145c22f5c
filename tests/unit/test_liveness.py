"""Which process may be a run's orchestrator: a stepledger program, not one that merely names a
stepledger path (a recycled pid running `tail -f .stepledger/runs/...` is not a live driver)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stepledger.engine.session.liveness import is_stepledger


@contextmanager
def running(argv: list[str]) -> Iterator[int]:
    proc = subprocess.Popen(argv, executable=sys.executable)  # argv[0] is as given
    try:
        # /proc shows the command line only once the new program is in place: wait for that.
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the process never showed its command line"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_only_mentions_a_stepledger_path_is_not_a_driver() -> None:
    sleeper = "import time; time.sleep(60)"
    with running(["python3", "-c", sleeper, ".stepledger/runs/r1/orchestrator.log"]) as pid:
        assert not is_stepledger(pid)
    with running(["stepledger", "-c", sleeper]) as pid:  # the program itself
        assert is_stepledger(pid)
    with running(["python3", "-c", sleeper, "-m", "stepledger.cli"]) as pid:  # `-m stepledger...`
        assert is_stepledger(pid)
    assert not is_stepledger(2**22 + 1)  # no such process
