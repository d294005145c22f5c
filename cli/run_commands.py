"""`run`, `resume`, `status`, `runs`, `logs` and `cancel`: driving runs and looking at them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepledger.engine.api import MAX_WORKERS, Stepledger

from .common import DbOption, JsonOption
from .output import echo_json, plain_cells
from .run_view import EXIT_BY_OUTCOME, print_end, print_preamble, resume_with_view, view_for

# Bounds are checked by the engine (one line, exit 2) rather than by Typer's min/max, whose usage
# error is a multi-line box.
WORKERS_HELP = f"Override max_workers (1 to {MAX_WORKERS})."


def run(
    file: Annotated[Path, typer.Argument(help="The workstream file (JSON or YAML).")],
    db: DbOption = None,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help=WORKERS_HELP)] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a workstream: its steps in parallel, every state change recorded in the log."""
    with Stepledger(db) as api:
        prepared = api.prepare_run(file, max_workers)
        from stepledger.engine.read.terminal_text import printable

        for said in prepared.warnings:  # unknown fields, settings not acted on: said once, on stderr
            typer.echo(f"{said.severity}: {printable(said.render())}", err=True)
        view = view_for(json_output, len(prepared.workstream.steps))
        try:
            print_preamble(view, prepared)
            report = api.run(prepared, reporter=view)
            print_end(view, report)
        finally:
            view.close()
    raise typer.Exit(EXIT_BY_OUTCOME.get(report.outcome, 1))


def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    db: DbOption = None,
    use_current_file: Annotated[
        bool, typer.Option("--use-current-file", help="Take the workstream file as it is now.")
    ] = False,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help=WORKERS_HELP)] = None,
    json_output: JsonOption = False,
) -> None:
    """Continue a run whose orchestrator stopped (a crash, Ctrl-C, a lost connection)."""
    with Stepledger(db) as api:
        outcome = resume_with_view(api, run_id, json_output, use_current_file, max_workers)
    raise typer.Exit(EXIT_BY_OUTCOME.get(outcome, 1))


def status(
    run_id: Annotated[str | None, typer.Argument(help="The run (default: the latest).")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Each step of a run: its state, attempt, duration and last error."""
    with Stepledger(db) as api:
        report = api.status(run_id)
    if json_output:
        echo_json(report)
        return
    from rich.console import Console
    from rich.table import Table

    (title,) = plain_cells(f"{report['run_id']} · {report['workstream_id']} · {report['status']}")
    table = Table(title=title)
    for column in ("step", "state", "attempt", "duration", "last error"):
        table.add_column(column)
    for step in report["steps"]:
        table.add_row(
            *plain_cells(
                step["step_id"], step["state"], step["attempt"], step["duration"], step["last_error"]
            )
        )
    Console().print(table)


def runs(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Every run in the log, newest first, with its outcome and timing."""
    with Stepledger(db) as api:
        rows = api.runs()
    if json_output:
        for row in rows:
            echo_json(row)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("run", "workstream", "status", "started", "elapsed", "steps"):
        table.add_column(column, no_wrap=column in ("run", "started"))
    for row in rows:
        table.add_row(*plain_cells(row["run_id"], row["workstream_id"], row["status"], row["started"],
                                   row["elapsed"], row["steps_summary"]))  # fmt: skip
    Console().print(table)


def logs(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    step_id: Annotated[str | None, typer.Argument(help="A step: its attempts' output.")] = None,
    db: DbOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing as the log grows.")] = False,
) -> None:
    """The run's orchestrator.log, or one step's output (every attempt)."""
    from .tail import print_files

    with Stepledger(db) as api:
        paths = api.log_files(run_id, step_id)
    print_files(paths, follow=follow)


def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    db: DbOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the log).")] = "",
) -> None:
    """Stop a run from another terminal: kill its running steps, start nothing new."""
    with Stepledger(db) as api:
        message = api.cancel(run_id, reason=reason)
    typer.echo(message)


def register(app: typer.Typer) -> None:
    """Add the run commands to `app`."""
    for command in (run, resume, status, runs, logs, cancel):
        app.command()(command)
