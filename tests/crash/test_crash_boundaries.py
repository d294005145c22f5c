"""kill -9 the orchestrator at every transition boundary (fault points), on SQLite and PostgreSQL.

Each case runs the diamond workstream with `STEPLEDGER_KILL_AT=<point>:<n>`, so the reactor dies by
SIGKILL at the n-th pass of that point; resume (killed again at `in_resume` in some cases) carries
the run to its end, and `CrashRun.check` asserts the promises from the log and the side-effect file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from crashkit import CrashRun, count, diamond, soak

# (point, pass) pairs: before_append and after_append fire once per committed tick, after_dispatch
# once per tick that dispatched, on_result once per arriving result.
BOUNDARIES = [
    ("before_append", 1), ("before_append", 4),
    ("after_append", 1), ("after_append", 2),
    ("after_dispatch", 1), ("after_dispatch", 3),
    ("on_result", 1), ("on_result", 4),
]  # fmt: skip
SOAK_COUNTS = range(1, 13)


# Every boundary on SQLite; on PostgreSQL one pass of each point (the soak runs them all on both).
CASES = [pytest.param("sqlite", p, n, id=f"sqlite-{p}:{n}") for p, n in BOUNDARIES] + [
    pytest.param("postgres", p, n, id=f"postgres-{p}:{n}", marks=pytest.mark.postgres)
    for p, n in (("before_append", 3), ("after_append", 2), ("after_dispatch", 1), ("on_result", 4))
]


@pytest.mark.parametrize(("db", "point", "nth"), CASES)
def test_kill_at_a_boundary_then_resume(
    tmp_path: Path, db: str, point: str, nth: int, tally: dict[str, int], request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    run = CrashRun(tmp_path, url, diamond())
    code = run.run(kill_at=f"{point}:{nth}")
    assert code == -9, f"the plan {point}:{nth} never fired (exit {code}):\n{run.output()}"
    # Every other case also kills the first resume while it recovers the orphaned attempts.
    run.resume_to_end(plans=["in_resume:1"] if nth % 2 else [])
    run.check()
    count(tally, run)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_append", "after_append", "after_dispatch", "on_result"])
def test_soak_every_pass_of_every_boundary(
    tmp_path: Path, crash_url: str, point: str, tally: dict[str, int], request: pytest.FixtureRequest
) -> None:
    assert soak(request)
    for nth in SOAK_COUNTS:
        run = CrashRun(tmp_path / f"{point}-{nth}", crash_url, diamond(0.05))
        code = run.run(kill_at=f"{point}:{nth},in_resume:1")
        if code == 0:
            run.check()  # the run had fewer passes than nth: nothing to resume
        else:
            run.resume_to_end(plans=[f"{point}:{nth}", "in_resume:1"])
            run.check()
        count(tally, run)
