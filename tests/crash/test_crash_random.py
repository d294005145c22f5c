"""kill -9 the orchestrator at random instants, over seeded iterations (more with --soak).

The instant of each kill is the experiment's input: a seeded delay after the process starts. Some
iterations also kill the first resume at a random instant. Whatever the instant, resuming to the
end must satisfy every promise `CrashRun.check` asserts.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from crashkit import CrashRun, count, diamond, soak

DEFAULT_SEEDS = 3
SOAK_SEEDS = 100


def iterate(workdir: Path, url: str, seed: int) -> CrashRun:
    """One seeded iteration: run, kill at a random instant, resume (perhaps killed too) to the end."""
    rng = random.Random(seed)
    run = CrashRun(workdir, url, diamond(rng.choice([0.1, 0.2, 0.3])), max_workers=rng.choice([1, 2, 3]))
    code = run.run(kill_after=rng.uniform(0.3, 2.0))
    if not run.run_id:  # killed before it recorded the run: there is nothing to resume
        assert code == -9
        code = run.run()
    if code != 0:
        # A clean stop on a database error (a PostgreSQL restart, shared servers see them) is a
        # crash like any other here: one error line, and resume must complete the run.
        clean_stop = code in (1, 2) and "error: " in run.output() and "Traceback" not in run.output()
        assert code == -9 or clean_stop, run.output()
        afters = [rng.uniform(0.1, 1.5)] if rng.random() < 0.5 else []
        run.resume_to_end(kill_afters=afters)
    run.check()
    return run


@pytest.mark.parametrize("seed", range(DEFAULT_SEEDS))
def test_kill_at_a_random_instant(tmp_path: Path, sqlite_url: str, seed: int, tally: dict[str, int]) -> None:
    count(tally, iterate(tmp_path, sqlite_url, seed))


@pytest.mark.postgres
@pytest.mark.parametrize("seed", range(100, 102))
def test_kill_at_a_random_instant_on_postgres(
    tmp_path: Path, pg_url: str, seed: int, tally: dict[str, int]
) -> None:
    count(tally, iterate(tmp_path, pg_url, seed))


@pytest.mark.slow
def test_soak_random_instants(
    tmp_path: Path, crash_url: str, tally: dict[str, int], request: pytest.FixtureRequest
) -> None:
    assert soak(request)
    for seed in range(1000, 1000 + SOAK_SEEDS):
        count(tally, iterate(tmp_path / str(seed), crash_url, seed))
