"""Timeouts, cancels, dead workers and a dead orchestrator, with real processes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from exec_support import (
    FIXTURES,
    RESULT_TIMEOUT,
    alive,
    an_idle_worker,
    await_exit,
    await_fifo,
    make_fifo,
    make_spec,
    run_one,
    started_pool,
)

from stepledger.engine.execution import files
from stepledger.engine.execution.forking import WORKER_NAME
from stepledger.engine.execution.recovery import kill_attempt, probe_attempt, read_result, wait_for_attempt

BLOCKING_MODULE = """
import time

def block(fifo):
    with open(fifo, "w") as f:
        f.write("in function")
    time.sleep(1000)

def quick():
    return {"ok": True}
"""


def run_dir(tmp_path: Path) -> str:
    return str(tmp_path / "run")


@pytest.mark.parametrize("round_", range(3))
def test_timeout_kills_the_tool_and_its_grandchildren(tmp_path: Path, round_: int) -> None:
    with started_pool(1) as (pool, results):
        spec = make_spec(
            tmp_path,
            tasks=("sleep 1000 & echo $! > gc.pid; wait",),
            timeout=0.3,
            acceptance_tests=("touch never",),
        )
        result = run_one(pool, results, spec)
    assert not result.passed and result.reason == "timeout"
    assert 0.3 <= result.finished_at - result.started_at < 5
    # The grandchild inherited the attempt's lock: once it is released, every process is gone.
    assert wait_for_attempt(run_dir(tmp_path), "s", 1, timeout=RESULT_TIMEOUT)
    assert await_exit(int((tmp_path / "gc.pid").read_text()))
    assert not (tmp_path / "never").exists()  # tests do not run after a timeout


def test_timeout_covers_the_acceptance_tests(tmp_path: Path) -> None:
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, acceptance_tests=("sleep 1000",), timeout=0.3))
    assert result.reason == "timeout" and result.acceptance[0]["passed"] is False


def test_cancel_kills_a_shell_attempt(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "go")
    with started_pool(2) as (pool, results):
        worker = an_idle_worker(pool)
        pool.submit(
            worker, make_spec(tmp_path, tasks=(f"sleep 1000 & echo $! > gc.pid; echo go > {fifo}; wait",))
        )
        await_fifo(fifo)
        assert pool.busy_count() == 1
        pool.cancel("r1", "s", 1)
        result = results.get(timeout=RESULT_TIMEOUT)
        assert result.reason == "cancelled" and result.worker_pid == worker.pid
        assert pool.busy_count() == 0
        # The worker survives a shell cancel and takes the next attempt.
        assert pool.idle_worker() == worker
        assert run_one(pool, results, make_spec(tmp_path, "next")).passed
    assert wait_for_attempt(run_dir(tmp_path), "s", 1, timeout=RESULT_TIMEOUT)
    assert await_exit(int((tmp_path / "gc.pid").read_text()))


def test_cancel_of_an_unknown_or_finished_attempt_is_a_no_op(tmp_path: Path) -> None:
    with started_pool(1) as (pool, results):
        assert run_one(pool, results, make_spec(tmp_path)).passed
        pool.cancel("r1", "s", 1)
        pool.cancel("r1", "other", 7)
        assert run_one(pool, results, make_spec(tmp_path, "t")).passed


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_python_function_is_stopped_by_replacing_its_worker(tmp_path: Path, how: str) -> None:
    (tmp_path / f"sl_block_{how}.py").write_text(BLOCKING_MODULE)
    fifo = make_fifo(tmp_path / "go")
    with started_pool(1) as (pool, results):
        worker = an_idle_worker(pool)
        spec = make_spec(
            tmp_path,
            tool="python",
            tasks=(f"sl_block_{how}:block {fifo}",),
            timeout=0.3 if how == "timeout" else None,
        )
        pool.submit(worker, spec)
        await_fifo(fifo)
        if how == "cancel":
            pool.cancel("r1", "s", 1, reason="cancelled")
        result = results.get(timeout=RESULT_TIMEOUT)
        assert result.reason == ("cancelled" if how == "cancel" else "timeout")
        assert await_exit(worker.pid)
        assert read_result(run_dir(tmp_path), "s", 1) == result  # the pool wrote it for the dead worker
        replacement = pool.idle_worker()
        assert replacement is not None and replacement.pid != worker.pid
        quick = run_one(
            pool, results, make_spec(tmp_path, "q", tool="python", tasks=(f"sl_block_{how}:quick",))
        )
        assert quick.passed and quick.outputs == {"ok": True}


@pytest.mark.parametrize("round_", range(4))
def test_kill_9_of_a_worker_mid_attempt_reports_lost_worker(tmp_path: Path, round_: int) -> None:
    fifo = make_fifo(tmp_path / "go")
    with started_pool(2) as (pool, results):
        worker = an_idle_worker(pool)
        pool.submit(
            worker, make_spec(tmp_path, tasks=(f"sleep 1000 & echo $! > gc.pid; echo go > {fifo}; wait",))
        )
        await_fifo(fifo)
        os.kill(worker.pid, signal.SIGKILL)
        result = results.get(timeout=RESULT_TIMEOUT)
        assert result.reason == "lost_worker" and not result.passed
        # Reported only after the attempt's processes are gone: a retry can never overlap them.
        assert probe_attempt(run_dir(tmp_path), "s", 1) == "finished"
        assert await_exit(int((tmp_path / "gc.pid").read_text()))
        assert read_result(run_dir(tmp_path), "s", 1) == result
        # A fresh worker replaced it, and both slots work.
        first = an_idle_worker(pool)
        pool.submit(first, make_spec(tmp_path, "a"))
        second = an_idle_worker(pool, exclude={first.pid})
        pool.submit(second, make_spec(tmp_path, "b"))
        assert worker.pid not in (first.pid, second.pid)
        assert all(results.get(timeout=RESULT_TIMEOUT).passed for _ in range(2))


def test_kill_9_of_a_worker_in_a_python_function(tmp_path: Path) -> None:
    (tmp_path / "sl_block_k.py").write_text(BLOCKING_MODULE)
    fifo = make_fifo(tmp_path / "go")
    with started_pool(1) as (pool, results):
        worker = an_idle_worker(pool)
        pool.submit(worker, make_spec(tmp_path, tool="python", tasks=(f"sl_block_k:block {fifo}",)))
        await_fifo(fifo)
        os.kill(worker.pid, signal.SIGKILL)
        assert results.get(timeout=RESULT_TIMEOUT).reason == "lost_worker"
        assert run_one(pool, results, make_spec(tmp_path, "after")).passed


def test_shutdown_kill_running_delivers_interrupted_results_first(tmp_path: Path) -> None:
    fifos = [make_fifo(tmp_path / f"go{i}") for i in range(2)]
    import queue

    from stepledger.engine.execution.pool import WorkerPool

    results: queue.SimpleQueue = queue.SimpleQueue()
    pool = WorkerPool(2, results)
    pool.start()
    for i, fifo in enumerate(fifos):
        pool.submit(
            an_idle_worker(pool), make_spec(tmp_path, f"s{i}", tasks=(f"echo go > {fifo}; sleep 1000",))
        )
    for fifo in fifos:
        await_fifo(fifo)
    pool.shutdown(kill_running=True, reason="interrupted")
    got = sorted((results.get_nowait().step_id, "interrupted") for _ in range(2))
    assert got == [("s0", "interrupted"), ("s1", "interrupted")]
    assert pool.busy_count() == 0


def test_shutdown_without_kill_waits_for_running_attempts(tmp_path: Path) -> None:
    import queue

    from stepledger.engine.execution.pool import WorkerPool

    results: queue.SimpleQueue = queue.SimpleQueue()
    pool = WorkerPool(1, results)
    pool.start()
    pool.submit(an_idle_worker(pool), make_spec(tmp_path, tasks=("sleep 0.2; touch done",)))
    pool.shutdown()
    assert results.get_nowait().passed and (tmp_path / "done").exists()


def test_workers_have_their_own_process_group(tmp_path: Path) -> None:
    with started_pool(2) as (pool, _results):
        worker = an_idle_worker(pool)
        assert os.getpgid(worker.pid) == worker.pid == worker.pgid != os.getpgrp()


def forked(pid: int) -> bool:
    """Whether worker `pid` was forked from its orchestrator (forking.py names it so)."""
    return Path(f"/proc/{pid}/comm").read_text().strip() == WORKER_NAME


@pytest.mark.parametrize("workers", ["spawned", "forked"])
@pytest.mark.parametrize("death", ["kill -9", "ctrl-c"])
def test_an_attempt_survives_the_death_of_its_orchestrator(tmp_path: Path, death: str, workers: str) -> None:
    started = make_fifo(tmp_path / "started")
    gate = make_fifo(tmp_path / "gate")
    task = f"echo go > {started}; read line < {gate}; echo $line > marker"
    driver = subprocess.Popen(
        [sys.executable, str(FIXTURES / "pool_driver.py"), str(tmp_path), "shell", task],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the KeyboardInterrupt traceback
        text=True,
        process_group=0,  # the driver's group stands for the terminal's foreground group
        env={**os.environ, "POOL_DRIVER_FORK": "1" if workers == "forked" else "0"},
    )
    assert driver.stdout is not None
    worker_pid = int(driver.stdout.readline())
    await_fifo(started)
    assert forked(worker_pid) == (workers == "forked")  # named so before it runs anything
    if death == "kill -9":
        driver.kill()
    else:
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C does: it reaches the group, not the workers
    driver.wait()
    driver.stdout.close()
    assert alive(worker_pid)
    assert probe_attempt(run_dir(tmp_path), "long step", 1) == "running"
    with open(gate, "w") as f:
        f.write("finished anyway\n")
    assert wait_for_attempt(run_dir(tmp_path), "long step", 1, timeout=RESULT_TIMEOUT)
    result = read_result(run_dir(tmp_path), "long step", 1)
    assert result is not None and result.passed and result.worker_pid == worker_pid
    assert (tmp_path / "marker").read_text() == "finished anyway\n"
    assert probe_attempt(run_dir(tmp_path), "long step", 1) == "finished"
    assert await_exit(worker_pid)  # the worker saw its pipe close and left
    lock = json.loads(Path(files.lock_path(run_dir(tmp_path), "long step", 1)).read_text())
    assert lock["worker_pid"] == worker_pid


@pytest.mark.parametrize("workers", ["spawned", "forked"])
@pytest.mark.parametrize("tool", ["shell", "python"])
def test_kill_attempt_stops_an_orphan_so_resume_sees_it_gone(tmp_path: Path, tool: str, workers: str) -> None:
    (tmp_path / "sl_orphan_mod.py").write_text(BLOCKING_MODULE)
    started = make_fifo(tmp_path / "started")
    task = {
        "shell": f"sleep 1000 & echo $! > gc.pid; echo go > {started}; wait",
        "python": f"sl_orphan_mod:block {started}",
    }[tool]
    driver = subprocess.Popen(
        [sys.executable, str(FIXTURES / "pool_driver.py"), str(tmp_path), tool, task],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "POOL_DRIVER_FORK": "1" if workers == "forked" else "0"},
    )
    assert driver.stdout is not None
    worker_pid = int(driver.stdout.readline())
    await_fifo(started)
    assert forked(worker_pid) == (workers == "forked")  # named so before it runs anything
    driver.kill()
    driver.wait()
    driver.stdout.close()
    assert probe_attempt(run_dir(tmp_path), "long step", 1) == "running"
    assert worker_pid in kill_attempt(run_dir(tmp_path), "long step", 1)
    assert wait_for_attempt(run_dir(tmp_path), "long step", 1, timeout=RESULT_TIMEOUT)
    assert await_exit(worker_pid)
    # Killed before it could write a result: resume records it as interrupted and retries it.
    assert probe_attempt(run_dir(tmp_path), "long step", 1) == "gone"
    if tool == "shell":
        assert await_exit(int((tmp_path / "gc.pid").read_text()))


def test_processes_left_behind_end_with_their_attempt(tmp_path: Path) -> None:
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=("sleep 1000 & echo $! > bg.pid",)))
    assert result.passed
    assert wait_for_attempt(run_dir(tmp_path), "s", 1, timeout=RESULT_TIMEOUT)
    assert await_exit(int((tmp_path / "bg.pid").read_text()))


@pytest.mark.slow  # waits out the worker's 2 s grace
def test_an_orphaned_python_task_past_its_timeout_ends_its_worker(tmp_path: Path) -> None:
    # No pool is left to kill the worker: its own alarm ends it, so resume never waits forever.
    (tmp_path / "sl_orphan_alarm.py").write_text(BLOCKING_MODULE)
    started = make_fifo(tmp_path / "started")
    driver = subprocess.Popen(
        [sys.executable, str(FIXTURES / "pool_driver.py"), str(tmp_path), "python",
         f"sl_orphan_alarm:block {started}", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert driver.stdout is not None
    worker_pid = int(driver.stdout.readline())
    await_fifo(started)
    driver.kill()
    driver.wait()
    driver.stdout.close()
    assert await_exit(worker_pid)
    assert probe_attempt(run_dir(tmp_path), "long step", 1) == "gone"
