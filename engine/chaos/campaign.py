"""The whole chaos command: plan it, run the workstream once uninterrupted, then every iteration,
checking each against that run; scratch folders are removed unless kept (or a violation's)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from stepledger.engine.workstream.loading import load_workstream

from .checks import check, expected_from
from .driver import drive
from .plan import ChaosInputError, ChaosPlan, choose_points, plan_iterations
from .points import KILL_POINTS, unreachable
from .report import ChaosReport, IterationResult
from .scratch import check_places, default_scratch, open_scratch, remove
from .stubs import ACCEPTANCE_STUB, stub_durations


def prepare(
    file: Path,
    *,
    workdir: Path,
    seed: int | None = None,
    iterations: int,
    kill_at: list[str],
    only: int | None = None,
    scratch: Path | None = None,
    db: str | None = None,
    db_shown: str | None = None,
    keep: bool = False,
    shell_stub: bool = False,
    stub_seconds: float | None = None,
    measured: dict[str, float] | None = None,
) -> ChaosPlan:
    """Check the options and the workstream and plan the iterations (nothing runs, nothing is written)."""
    file, workdir = file.resolve(), workdir.resolve()
    workstream = load_workstream(file)  # WorkstreamInvalid: every problem, exit 2
    why = {p.name: reason for p in KILL_POINTS if (reason := unreachable(p, workstream, shell_stub))}
    points = choose_points(kill_at, why)
    if not points:
        raise ChaosInputError("no kill point is reachable in this workstream; name one with --kill-at")
    if stub_seconds is not None and not 0 <= stub_seconds <= 3600:
        raise ChaosInputError(f"--stub-seconds {stub_seconds:g}: give seconds from 0 to 3600")
    scratch = (scratch or default_scratch()).resolve()
    check_places(workdir, scratch)
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    return ChaosPlan(
        file=file,
        workdir=workdir,
        scratch=scratch,
        seed=seed,
        points=points,
        unreachable={name: reason for name, reason in why.items() if not kill_at},
        iterations=plan_iterations(seed, points, iterations, only, workstream),
        db=db,
        db_shown=db_shown,
        keep=keep,
        shell_stub=shell_stub,
        stub_seconds=stub_seconds,
        stub_durations=stub_durations(workstream, measured or {}, stub_seconds) if shell_stub else {},
    )


def acceptance_lines(plan: ChaosPlan) -> frozenset[str]:
    """The first line of each acceptance test, as an attempt log shows it when the test starts."""
    if plan.shell_stub:
        return frozenset({ACCEPTANCE_STUB})
    workstream = load_workstream(plan.file)
    return frozenset(t.splitlines()[0] for s in workstream.steps for t in s.acceptance_tests if t.strip())


def run_chaos(plan: ChaosPlan, on_iteration: Callable[[IterationResult], None] | None = None) -> ChaosReport:
    """Run the uninterrupted run and every planned iteration; the report."""
    created = open_scratch(plan.scratch)
    lines = acceptance_lines(plan)
    baseline = drive(plan, plan.scratch / "uninterrupted", None, 0.0, lines)
    if baseline.error or not baseline.run_id:
        raise ChaosInputError(
            f"the uninterrupted run of {plan.file} did not end: {baseline.error or 'it recorded no run'} "
            f"(its output is in {baseline.folder}; with a tool that is not installed here, try --shell-stub)"
        )
    expected = expected_from(baseline)
    report = ChaosReport(plan, expected)
    for iteration in plan.iterations:
        folder = plan.scratch / f"iteration-{iteration.index:03d}"
        outcome = drive(plan, folder, iteration, expected.seconds, lines)
        result = IterationResult(
            iteration, outcome, check(outcome, expected), plan.replay_command(iteration), expected.seconds
        )
        report.results.append(result)
        if plan.keep or result.findings:
            report.kept.append(folder)
        else:
            remove(folder)
        if on_iteration is not None:
            on_iteration(result)
    if plan.keep:
        report.kept.insert(0, baseline.folder)
    else:
        remove(baseline.folder)
    if not report.kept and created:
        remove(plan.scratch)
    return report
