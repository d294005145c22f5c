"""`chaos`: run a workstream again and again in scratch copies, kill -9 its orchestrator at named
points and random instants, resume it, and check each run against the engine's promises."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import DbOption, JsonOption
from .output import echo_json, plain_cells

if TYPE_CHECKING:
    from stepledger.engine.api import ChaosPlan, ChaosReport, IterationResult

POINTS_HELP = (
    "A kill point to aim at (repeat for several): after_dispatch, slow_workers, random, after_append, "
    "acceptance, on_result, before_append, retry_wait, in_resume, rollback. Default: every one the "
    "workstream can reach."
)


def chaos(
    file: Annotated[Path, typer.Argument(help="The workstream file to check.")],
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="How many killed runs.")] = 6,
    seed: Annotated[
        int | None, typer.Option("--seed", help="The seed of the plan (default: a new one).")
    ] = None,
    kill_at: Annotated[list[str] | None, typer.Option("--kill-at", help=POINTS_HELP)] = None,
    iteration: Annotated[
        int | None, typer.Option("--iteration", help="Run only this iteration of the seed's plan (a replay).")
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="The folder copied for each run (default: the current one)."),
    ] = None,
    scratch: Annotated[
        Path | None,
        typer.Option("--scratch", help="Where the copies go (default: a new folder in the temp dir)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep every copy (default: only those with violations).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run nothing.")] = False,
    shell_stub: Annotated[
        bool, typer.Option("--shell-stub", help="Replace each step's task by a stub of about its duration.")
    ] = False,
    stub_seconds: Annotated[
        float | None,
        typer.Option(
            "--stub-seconds",
            help="With --shell-stub: every stub's seconds (default: earlier runs' "
            "durations, else estimated_duration, else 0.5).",
        ),
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Kill -9 a workstream's orchestrator again and again, resume it, and check every run."""
    from stepledger.engine.api import Stepledger

    api = Stepledger(db)
    plan = api.chaos_plan(
        file,
        workdir=workdir,
        seed=seed,
        iterations=iterations,
        kill_at=kill_at or [],
        only=iteration,
        scratch=scratch,
        keep=keep,
        shell_stub=shell_stub,
        stub_seconds=stub_seconds,
    )
    if dry_run:
        if json_output:
            echo_json(_plan_json(plan))
        else:
            _print_plan(plan)
        return
    if not json_output:
        count = len(plan.iterations)
        typer.echo(
            f"chaos: seed {plan.seed}, {count} iteration{'s' * (count != 1)}, copies in {plan.scratch}"
        )
    try:
        report = api.chaos(plan, None if json_output else _print_iteration)
    except KeyboardInterrupt:
        typer.echo(f"chaos interrupted; what it made so far is in {plan.scratch}", err=True)
        raise typer.Exit(130) from None
    if json_output:
        echo_json(report.as_json())
    else:
        _print_report(report)
    if report.violations:
        raise typer.Exit(1)


def _plan_json(plan: ChaosPlan) -> dict[str, Any]:
    return {
        "workstream": str(plan.file),
        "workdir": str(plan.workdir),
        "scratch": str(plan.scratch),
        "seed": plan.seed,
        "kill_points": list(plan.points),
        "unreachable": plan.unreachable,
        "stub_seconds": plan.stub_durations if plan.shell_stub else None,
        "iterations": [
            {
                "index": it.index,
                "kill_point": it.point,
                "run": it.first.describe(),
                "resume": it.resume_kill.describe() if it.resume_kill else None,
                "replay": plan.replay_command(it),
            }
            for it in plan.iterations
        ],
    }


def _print_plan(plan: ChaosPlan) -> None:
    typer.echo(f"chaos plan for {plan.file} (seed {plan.seed}); nothing has run")
    typer.echo(
        f"  copies of {plan.workdir} go to {plan.scratch}/ (first an uninterrupted run, then each iteration)"
    )
    typer.echo(f"  kill points: {', '.join(plan.points)}")
    for name, why in plan.unreachable.items():
        typer.echo(f"  left out: {name} ({why})")
    if plan.shell_stub:
        stubs = ", ".join(f"{step} {seconds:g}s" for step, seconds in plan.stub_durations.items())
        typer.echo(f"  shell stubs: {stubs}")
    for it in plan.iterations:
        resume = f"; first resume killed {it.resume_kill.describe()}" if it.resume_kill else ""
        typer.echo(f"  iteration {it.index}: {it.point} — run killed {it.first.describe()}{resume}")


def _print_iteration(result: IterationResult) -> None:
    mark = "✗" if result.findings else "✓"
    hit = ", ".join(result.outcome.points_hit) or "no kill landed"
    typer.echo(
        f"  {mark} iteration {result.plan.index} ({result.plan.point}): {hit}; "
        f"{result.outcome.resumes} resumes, {result.outcome.seconds:.1f}s"
    )


def _print_report(report: ChaosReport) -> None:
    from rich.console import Console
    from rich.table import Table

    totals = report.totals()
    table = Table(
        title=f"chaos · seed {report.plan.seed} · uninterrupted: {report.expected.status} "
        f"in {report.expected.seconds:.1f}s"
    )
    for column in (
        "iterations",
        "kills",
        "kill points hit",
        "resumes",
        "time lost to recovery",
        "violations",
    ):
        table.add_column(column)
    hit = ", ".join(f"{name} {n}" for name, n in totals["kill_points_hit"].items()) or "none"
    table.add_row(
        *plain_cells(
            totals["iterations"],
            totals["kills"],
            hit,
            totals["resumes"],
            f"{totals['recovery_seconds']:.1f}s",
            totals["violations"],
        )
    )
    Console(width=120).print(table)
    for row in report.violation_rows():
        where = f" {row['step']}:" if row["step"] else ""
        typer.echo(
            f"✗ iteration {row['iteration']} (seed {row['seed']}, kill point {row['kill_point']}) "
            f"[{row['rule']}]{where} {row['message']}",
            err=True,
        )
        typer.echo(f"  replay: {row['replay']}", err=True)
    for folder in report.kept:
        typer.echo(f"kept: {folder}")
    if not report.violations:
        typer.echo("✓ every iteration held: see docs/crash-safety.md for what this does and does not prove")


def register(app: typer.Typer) -> None:
    """Add the chaos command to `app`."""
    app.command()(chaos)
