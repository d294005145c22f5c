"""`retry`, `skip` and `mark-passed`: an operator's decision about one step, recorded in the log.

Each appends one event with who (the login name), when (the store's timestamp) and `--reason`.
If the run's orchestrator is alive it is woken to act on it; otherwise the command resumes the run
itself (like `stepledger resume`) unless `--no-resume` is given.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DbOption, JsonOption

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the log).")]
NoResumeOption = Annotated[
    bool, typer.Option("--no-resume", help="Only record the decision; do not continue the run here.")
]


def _act(
    action: str, run_id: str, step_id: str, db: str | None, reason: str, no_resume: bool, json_output: bool
) -> None:
    from stepledger.engine.api import Stepledger

    from .run_view import EXIT_BY_OUTCOME, resume_with_view

    with Stepledger(db) as api:
        done = api.intervene(action, run_id, step_id, reason=reason)
        if not json_output:
            typer.echo(done.message)
        if done.next == "woken":
            return
        if done.next == "elsewhere":
            typer.echo(f"{done.detail}; the decision is in the log for it")
            return
        if no_resume:
            if not json_output:
                typer.echo(f"continue the run with: stepledger resume {run_id}")
            return
        outcome = resume_with_view(api, run_id, json_output)
    raise typer.Exit(EXIT_BY_OUTCOME.get(outcome, 1))


def retry(
    run_id: Annotated[str, typer.Argument(help="The run: an id, a unique prefix of it, or `latest`.")],
    step_id: Annotated[str, typer.Argument(help="A failed, tripped, blocked or skipped step.")],
    db: DbOption = None,
    reason: ReasonOption = "",
    no_resume: NoResumeOption = False,
    json_output: JsonOption = False,
) -> None:
    """Give a failed step a new attempt (its breaker reset, the steps it blocked unblocked), then resume."""
    _act("retry", run_id, step_id, db, reason, no_resume, json_output)


def skip(
    run_id: Annotated[str, typer.Argument(help="The run: an id, a unique prefix of it, or `latest`.")],
    step_id: Annotated[str, typer.Argument(help="A step that has not passed and is not running.")],
    db: DbOption = None,
    reason: ReasonOption = "",
    no_resume: NoResumeOption = False,
    json_output: JsonOption = False,
) -> None:
    """Count a step as skipped: its dependents run without it."""
    _act("skip", run_id, step_id, db, reason, no_resume, json_output)


def mark_passed(
    run_id: Annotated[str, typer.Argument(help="The run: an id, a unique prefix of it, or `latest`.")],
    step_id: Annotated[str, typer.Argument(help="A step that has not passed and is not running.")],
    db: DbOption = None,
    reason: ReasonOption = "",
    no_resume: NoResumeOption = False,
    json_output: JsonOption = False,
) -> None:
    """Declare a step passed without running it (e.g. it was fixed by hand): its dependents run."""
    _act("mark-passed", run_id, step_id, db, reason, no_resume, json_output)


def register(app: typer.Typer) -> None:
    """Add the operator commands to `app`."""
    app.command()(retry)
    app.command()(skip)
    app.command("mark-passed")(mark_passed)
