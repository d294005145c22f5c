"""The claim rule (engine/execution/claim.py): no attempt runs unless its worker claimed it while it
was undecided and its pool was there; recovery decides an attempt only under the attempt's lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from exec_support import FIXTURES, RESULT_TIMEOUT, alive, await_exit, make_spec, run_one, started_pool
from test_execution_recovery import finish, hold_lock

from stepledger.engine.execution import files
from stepledger.engine.execution.recovery import read_lock, read_result, settle


def run_dir(tmp_path: Path) -> str:
    return str(tmp_path / "run")


def test_settle_fences_an_unclaimed_attempt_and_its_late_job_is_dropped(tmp_path: Path) -> None:
    rd = run_dir(tmp_path)
    verdict = settle(rd, "r1", "s", 1, started_at=1.0)
    assert verdict is not None and verdict.reason == "interrupted" and not verdict.passed
    assert read_result(rd, "s", 1) == verdict  # on file before the lock was let go: the fence
    # The job of the dead reactor arrives at a worker only now.
    with started_pool(1) as (pool, results):
        reported = run_one(pool, results, make_spec(tmp_path, tasks=("touch ran",)))
    assert reported == verdict  # the worker reports the verdict it found instead of running
    assert not (tmp_path / "ran").exists()
    assert "attempt not started" in Path(files.log_path(rd, "s", 1)).read_text()


def test_settle_waits_while_the_attempt_is_claimed_and_fences_once_it_died(tmp_path: Path) -> None:
    rd = run_dir(tmp_path)
    os.makedirs(rd)
    holder = hold_lock(files.lock_path(rd, "s", 1))  # a claimed attempt, alive
    try:
        assert settle(rd, "r1", "s", 1, started_at=1.0) is None
        assert read_result(rd, "s", 1) is None  # nothing decided while it lives
    finally:
        finish(holder)
    verdict = settle(rd, "r1", "s", 1, started_at=1.0)  # it died without a result
    assert verdict is not None and verdict.reason == "interrupted"


def test_a_result_on_file_wins_over_strays_holding_the_lock(tmp_path: Path) -> None:
    rd = run_dir(tmp_path)
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=("true",)))
    assert result.passed
    # A process that escaped the dead worker still holds the attempt's lock.
    stray = hold_lock(files.lock_path(rd, "s", 1))
    try:
        assert settle(rd, "r1", "s", 1, started_at=1.0) == result  # at once, not when the stray ends
        assert stray.wait(RESULT_TIMEOUT) == -9
    finally:
        finish(stray)


@pytest.mark.parametrize("round_", range(3))
def test_a_job_read_after_its_orchestrator_died_is_not_run(tmp_path: Path, round_: int) -> None:
    env = {**os.environ, "STEPLEDGER_FAULT_CLAIM_DELAY": "1.0"}
    driver = subprocess.Popen(
        [sys.executable, str(FIXTURES / "pool_driver.py"), str(tmp_path), "shell", "touch ran"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert driver.stdout is not None
    worker_pid = int(driver.stdout.readline())  # the job is in the worker's pipe
    driver.kill()
    driver.wait()
    driver.stdout.close()
    assert alive(worker_pid)  # still in its claim delay
    assert await_exit(worker_pid)
    assert not (tmp_path / "ran").exists()
    rd = run_dir(tmp_path)
    assert "the orchestrator that sent it is gone" in Path(files.log_path(rd, "long step", 1)).read_text()
    assert read_result(rd, "long step", 1) is None  # the verdict is recovery's to write
    assert read_lock(rd, "long step", 1) == {}  # never claimed


def test_a_claim_is_written_before_the_tool_starts(tmp_path: Path) -> None:
    module = tmp_path / "sl_claim_mod.py"
    module.write_text(
        "import json, os\n"
        "def show(path):\n"
        "    with open(path) as f:\n"
        "        return {'lock': json.loads(f.read())}\n"
    )
    rd = run_dir(tmp_path)
    lock = files.lock_path(rd, "s", 1)
    with started_pool(1) as (pool, results):
        result = run_one(
            pool, results, make_spec(tmp_path, tool="python", tasks=(f"sl_claim_mod:show {lock}",))
        )
    assert result.passed, result.output_excerpt
    # A python function runs inside its worker and starts no child, yet the claim names it.
    assert result.outputs["lock"]["claimed"] is True
    assert result.outputs["lock"]["worker_pid"] == result.worker_pid
