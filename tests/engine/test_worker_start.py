"""A worker starts without `site` (pool.py's -S boot) and adds it before a python task's code runs;
at the pool's shutdown a worker that does not leave is killed after the grace."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
from exec_support import make_spec, run_one

from stepledger.engine.execution import pool as pool_module
from stepledger.engine.execution.pool import WorkerPool
from stepledger.engine.execution.spec import AttemptResult

PROBE = """
import sys

def probe(path):
    import yaml  # installed in site-packages, which an interpreter started with -S does not see
    with open(path, "w") as f:
        f.write(f"{yaml.__name__} {sys.flags.no_site}")
"""


@pytest.mark.parametrize("python_tasks", [False, True])
def test_a_python_task_imports_from_site_packages_in_a_worker_started_without_site(
    tmp_path: Path, python_tasks: bool
) -> None:
    (tmp_path / "probe_site.py").write_text(PROBE)
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    pool = WorkerPool(1, results, python_tasks=python_tasks)
    pool.start()
    try:
        worker = pool.idle_worker()
        assert worker is not None
        # Read once the child has exec'd: between fork and exec its command line is empty.
        deadline = time.monotonic() + 30
        while not (argv := Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0"))[0]:
            assert time.monotonic() < deadline, "the worker never exec'd"
            time.sleep(0.01)
        assert b"-S" in argv  # the interpreter itself skipped site
        # A shell task first: the worker serves attempts before it ever needs site.
        assert run_one(pool, results, make_spec(tmp_path, "shell-first", ("true",))).passed
        out = tmp_path / "out.txt"
        spec = make_spec(tmp_path, "py", (f"probe_site:probe {out}",), tool="python")
        result = run_one(pool, results, spec)
        assert result.passed, result.output_excerpt
        assert out.read_text() == "yaml 1"
    finally:
        pool.shutdown(kill_running=True)


# A python task (run inside the worker) that points the worker's end of the job pipe at a pipe the
# worker itself holds open: the pool's end-of-file never reaches it, so it would never leave.
WEDGE = """
import gc, os
from stepledger.engine.execution.protocol import Channel

def wedge():
    channel = next(o for o in gc.get_objects() if isinstance(o, Channel))
    read_end, _write_end = os.pipe()
    os.dup2(read_end, channel.rfd)
"""


def test_a_worker_that_does_not_leave_at_shutdown_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "SHUTDOWN_GRACE", 0.5)
    (tmp_path / "wedge_channel.py").write_text(WEDGE)
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    pool = WorkerPool(1, results)
    pool.start()
    worker = pool.idle_worker()
    assert worker is not None
    wedged = run_one(pool, results, make_spec(tmp_path, "wedge", ("wedge_channel:wedge",), tool="python"))
    assert wedged.passed, wedged.output_excerpt
    pool.shutdown()
    with pytest.raises(ProcessLookupError):
        os.kill(worker.pid, 0)  # killed, and reaped before shutdown returned
