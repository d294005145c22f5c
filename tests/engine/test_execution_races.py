"""Races between completions, cancels and worker deaths: every attempt reports exactly once."""

from __future__ import annotations

import os
import queue
import signal
from pathlib import Path

import pytest
from exec_support import RESULT_TIMEOUT, an_idle_worker, await_exit, make_spec, run_one, started_pool

from stepledger.engine.execution.recovery import probe_attempt, wait_for_attempt

MODULE = """
import os

def dirty():
    os.environ["SL_SET_BY_FUNCTION"] = "1"
    os.environ.pop("SL_KEEP", None)
    os.chdir("/")

def look():
    env = os.environ
    return {"set": env.get("SL_SET_BY_FUNCTION"), "keep": env.get("SL_KEEP"), "cwd": os.getcwd()}

def quick():
    return None
"""


def drain(results: queue.SimpleQueue, n: int) -> list:
    return [results.get(timeout=RESULT_TIMEOUT) for _ in range(n)]


@pytest.mark.parametrize("tool", ["shell", "python"])
def test_cancel_racing_completion_reports_each_attempt_once(tmp_path: Path, tool: str) -> None:
    (tmp_path / "sl_race_mod.py").write_text(MODULE)
    task = "true" if tool == "shell" else "sl_race_mod:quick"
    with started_pool(2) as (pool, results):
        for i in range(15):
            worker = an_idle_worker(pool)
            pool.submit(worker, make_spec(tmp_path, f"c{i}", tool=tool, tasks=(task,)))
            pool.cancel("r1", f"c{i}", 1)
            (result,) = drain(results, 1)
            assert result.step_id == f"c{i}"
            assert result.passed or result.reason == "cancelled"
            # The result file follows the report, under the attempt's lock (which readers wait for).
            assert wait_for_attempt(str(tmp_path / "run"), f"c{i}", 1, timeout=10)
            assert probe_attempt(str(tmp_path / "run"), f"c{i}", 1) == "finished"
        assert pool.busy_count() == 0
        assert results.empty()
        assert run_one(pool, results, make_spec(tmp_path, "after", tool=tool, tasks=(task,))).passed


def test_parallel_attempts_overlap_and_report_on_their_own_workers(tmp_path: Path) -> None:
    with started_pool(3) as (pool, results):
        chosen: list[int] = []
        for i in range(3):
            worker = an_idle_worker(pool, exclude=chosen)
            chosen.append(worker.pid)
            pool.submit(worker, make_spec(tmp_path, f"p{i}", tasks=("sleep 0.2",)))
        assert pool.idle_worker() is None and pool.busy_count() == 3
        got = drain(results, 3)
    assert sorted(r.worker_pid for r in got) == sorted(chosen)
    assert max(r.started_at for r in got) < min(r.finished_at for r in got)  # all three ran at once


def test_a_python_function_leaves_no_env_or_cwd_behind(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sl_dirty_mod.py").write_text(MODULE)
    monkeypatch.setenv("SL_KEEP", "kept")
    with started_pool(1) as (pool, results):
        assert run_one(
            pool, results, make_spec(tmp_path, "d", tool="python", tasks=("sl_dirty_mod:dirty",))
        ).passed
        look = run_one(pool, results, make_spec(tmp_path, "l", tool="python", tasks=("sl_dirty_mod:look",)))
    assert look.outputs == {"set": None, "keep": "kept", "cwd": str(tmp_path)}


def test_an_idle_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    with started_pool(1) as (pool, results):
        first = an_idle_worker(pool)
        os.kill(first.pid, signal.SIGKILL)
        assert await_exit(first.pid)
        # The replacement appears once the pool saw the death; submitting to the dead handle in
        # between is answered with lost_worker, never silence.
        worker = an_idle_worker(pool)
        pool.submit(worker, make_spec(tmp_path))
        result = results.get(timeout=RESULT_TIMEOUT)
        assert result.passed or result.reason == "lost_worker"
        assert run_one(pool, results, make_spec(tmp_path, "again")).passed
        assert an_idle_worker(pool).pid != first.pid


def test_many_quick_attempts_each_report_once(tmp_path: Path) -> None:
    (tmp_path / "sl_many_mod.py").write_text(MODULE)
    with started_pool(2) as (pool, results):
        todo = [make_spec(tmp_path, f"m{i}", tool="python", tasks=("sl_many_mod:quick",)) for i in range(300)]
        seen: list[str] = []
        while len(seen) < 300:
            while todo and (worker := pool.idle_worker()) is not None:
                pool.submit(worker, todo.pop())
            result = results.get(timeout=RESULT_TIMEOUT)
            assert result.passed
            seen.append(result.step_id)
        assert sorted(seen) == sorted(f"m{i}" for i in range(300))
        assert results.empty()
