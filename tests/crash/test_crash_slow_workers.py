"""Workers that are slow to claim their jobs, and a reactor that dies while a job sits unread.

`STEPLEDGER_FAULT_CLAIM_DELAY` makes every worker wait that long between reading a job and
claiming it — a worker still starting, or a loaded machine. The orchestrator is killed right
after it dispatched (the jobs are in the workers' pipes, unread), and resumed at once, long before
the delayed workers wake. The claim rule must make the orphaned jobs die unrun: resume fences each
unclaimed attempt with its verdict, and the late worker, under the attempt's lock, finds it and
drops the job. `CrashRun.check` waits for every orphaned worker to exit before it reads the
side-effect file, so a late execution would be seen: two starts, or overlapping attempts.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from crashkit import CrashRun, Spec, count, soak

from stepledger.engine.execution import files

DEFAULT_SEEDS = 3
SOAK_SEEDS = 40


def chain_and_fan(seconds: float) -> list[Spec]:
    """a → (b, c) → d: a first dispatch of one job, then of two at once."""
    return [
        Spec("a", (), seconds),
        Spec("b", ("a",), seconds),
        Spec("c", ("a",), seconds),
        Spec("d", ("b", "c"), seconds),
    ]


def iterate(workdir: Path, url: str, seed: int) -> tuple[CrashRun, int]:
    """One seeded iteration; returns the run and how many orphaned jobs were refused."""
    rng = random.Random(seed)
    run = CrashRun(workdir, url, chain_and_fan(rng.choice([0.05, 0.1, 0.2])), max_workers=rng.choice([2, 3]))
    # Long enough that the resume (a fresh interpreter) settles the orphans before they wake.
    run.faults["STEPLEDGER_FAULT_CLAIM_DELAY"] = str(rng.choice([2.0, 3.0]))
    nth = rng.choice([1, 2])  # the dispatch of a, or of b and c
    code = run.run(kill_at=f"after_dispatch:{nth}")
    assert code == -9, f"the plan after_dispatch:{nth} never fired (exit {code}):\n{run.output()}"
    # The resumes' workers are slow too; some resumes die right after dispatching again.
    plans = [f"after_dispatch:{rng.choice([1, 2])}"] if rng.random() < 0.5 else []
    run.resume_to_end(plans=plans)
    run.check()
    return run, refused_jobs(run)


def refused_jobs(run: CrashRun) -> int:
    """How many attempts' logs say a worker read the job after its orchestrator died, and dropped it."""
    run_dir = run.workdir / ".stepledger" / "runs" / run.run_id
    return sum("attempt not started" in log.read_text() for log in run_dir.glob("*.log"))


@pytest.mark.parametrize("seed", range(DEFAULT_SEEDS))
def test_unread_jobs_of_a_dead_reactor_never_run(
    tmp_path: Path, crash_url: str, seed: int, tally: dict[str, int]
) -> None:
    run, refused = iterate(tmp_path, crash_url, seed)
    # The fault did what it is for: at least the jobs of the killed dispatch were read late.
    assert refused >= 1, "no worker read a job after its orchestrator died: the fault did not bite"
    count(tally, run)


@pytest.mark.slow
def test_soak_unread_jobs(
    tmp_path: Path, crash_url: str, tally: dict[str, int], request: pytest.FixtureRequest
) -> None:
    assert soak(request)
    for seed in range(1000, 1000 + SOAK_SEEDS):
        run, refused = iterate(tmp_path / str(seed), crash_url, seed)
        assert refused >= 1
        count(tally, run)


def test_refused_attempt_logs_why(tmp_path: Path, sqlite_url: str) -> None:
    """The attempt the dead reactor sent is recorded interrupted, and its log says it never ran."""
    run = CrashRun(tmp_path, sqlite_url, [Spec("a", (), 0.05)], max_workers=1)
    run.faults["STEPLEDGER_FAULT_CLAIM_DELAY"] = "2"
    assert run.run(kill_at="after_dispatch:1") == -9
    run.faults.clear()
    run.resume_to_end()
    state = run.check()
    assert state.steps["a"].attempt == 2  # attempt 1 was fenced and retried
    interrupted = run.events("step.failed", "a")
    assert [e.payload["reason"] for e in interrupted] == ["interrupted"]
    log = Path(files.log_path(str(tmp_path / ".stepledger" / "runs" / run.run_id), "a", 1)).read_text()
    assert "attempt not started" in log
    assert run.side_lines()["a"].keys() == {2}  # attempt 1 left no evidence at all
