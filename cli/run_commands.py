"""`run`, `resume`, `status`, `runs`, `logs` and `cancel`: driving runs and looking at them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepledger.engine.api import MAX_WORKERS, DetachedRun, Stepledger

from .common import DbOption, JsonOption
from .output import echo_json, plain_cells, status_cells, table_console
from .run_path import resume_run, run_workstream
from .workstream_commands import ParamOption, ParamsFileOption, given_params

# Bounds are checked by the engine (one line, exit 2) rather than by Typer's min/max, whose usage
# error is a multi-line box.
WORKERS_HELP = f"Override max_workers (1 to {MAX_WORKERS})."
RUN_HELP = "The run: an id, a unique prefix of it, or `latest` (the default)."


def run(
    file: Annotated[Path, typer.Argument(help="The workstream file (JSON or YAML).")],
    db: DbOption = None,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help=WORKERS_HELP)] = None,
    json_output: JsonOption = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", "-d", help="Run in the background (no terminal can stop it); print the run id."
        ),
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", hidden=True)] = None,  # the detached run's id
    param: ParamOption = None,
    params_file: ParamsFileOption = None,
    merge_into: Annotated[
        str | None,
        typer.Option(
            "--merge-into",
            metavar="BRANCH",
            help="Git isolation: merge a passed run's integration branch into BRANCH (docs/worktrees.md).",
        ),
    ] = None,
    on_workers: Annotated[
        bool,
        typer.Option("--on-workers", help="Run the attempts on `stepledger worker`s (docs/workers.md)."),
    ] = False,
    no_takeover: Annotated[
        bool,
        typer.Option(
            "--no-takeover",
            help="With --on-workers: if this process dies, wait for `resume`"
            " instead of a worker taking the run over.",
        ),
    ] = False,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="NAME",
            help="With --on-workers: the queue whose workers take the run over if this process dies"
            " (default: default).",
        ),
    ] = None,
) -> None:
    """Run a workstream: its steps in parallel, every state change recorded in the log.

    Ctrl-C once starts no new step and lets the running ones finish; twice stops them too (resume
    reruns them). Closing the terminal does not stop the run: its lines go on in orchestrator.log.
    """
    if detach:
        params = Stepledger.run_params(param or [], params_file) if given_params(param, params_file) else None
        with Stepledger(db) as api:
            started = api.start_detached(
                file, max_workers, params=params, merge_into=merge_into, on_workers=on_workers,
                takeover=not no_takeover, drive_queue=queue,
            )  # fmt: skip
        _said_detached(started, json_output)
        return
    # The same run as the command line's own parser starts (run_path.py), which Typer reaches
    # only for the lines that parser declines.
    raise typer.Exit(run_workstream(file=file, db=db, max_workers=max_workers, json_output=json_output,
                                    run_id=run_id, param=param, params_file=params_file,
                                    merge_into=merge_into, on_workers=on_workers,
                                    no_takeover=no_takeover, queue=queue))  # fmt: skip


def _said_detached(started: DetachedRun, json_output: bool) -> None:
    if json_output:
        echo_json({"run_id": started.run_id, "pid": started.pid, "output": str(started.output)})
        return
    typer.echo(f"run {started.run_id} started in the background (pid {started.pid})")
    typer.echo(f"  follow it: stepledger logs {started.run_id} --follow")
    typer.echo(f"  stop it:   stepledger cancel {started.run_id}")


def resume(
    run_id: Annotated[
        str | None,
        typer.Argument(
            help="The run to continue: an id, a unique prefix, or `latest` (default: the "
            "newest unfinished run)."
        ),
    ] = None,
    db: DbOption = None,
    use_current_file: Annotated[
        bool, typer.Option("--use-current-file", help="Take the workstream file as it is now.")
    ] = False,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help=WORKERS_HELP)] = None,
    json_output: JsonOption = False,
    submit: Annotated[
        bool,
        typer.Option(
            "--submit",
            help="Hand a run on workers back to the fleet instead of driving it here: a worker "
            "serving its queue resumes it. Prints at once.",
        ),
    ] = False,
) -> None:
    """Continue a run whose orchestrator stopped (a crash, Ctrl-C, a lost connection)."""
    code = resume_run(run_id=run_id, db=db, use_current_file=use_current_file, max_workers=max_workers,
                      json_output=json_output, submit=submit)  # fmt: skip
    raise typer.Exit(code)


def status(
    run_id: Annotated[str | None, typer.Argument(help=RUN_HELP)] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Each step of a run: its state, attempt, duration and last error."""
    with Stepledger(db) as api:
        report = api.status(run_id)
    if json_output:
        echo_json(report)
        return
    from rich.table import Table

    params = Stepledger.params_text(report["params"])
    shown = f"{report['run_id']} · {report['workstream_id']} · {report['shown_status']}"
    (title,) = plain_cells(shown + (f" · {params}" if params else ""))
    table = Table(title=title)
    for column in ("step", "state", "attempt", "duration", "last error"):
        table.add_column(column)
    for step in report["steps"]:
        # What a step does now: a running step of a run on workers may still wait for a worker.
        table.add_row(*status_cells({**step, "state": step["shown_state"]}))
    table_console().print(table)


def runs(
    db: DbOption = None,
    json_output: JsonOption = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Only the newest N runs.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs with this status (running, failed, ...).")
    ] = None,
    workstream: Annotated[
        str | None, typer.Option("--workstream", "-w", help="Only runs of this workstream id.")
    ] = None,
) -> None:
    """The runs in the log, newest first, with their outcome and timing."""
    with Stepledger(db) as api:
        rows = api.runs(limit, status, workstream)
    if json_output:
        for row in rows:
            echo_json(row)
        return
    from rich.table import Table

    table = Table()
    for column in ("run", "workstream", "status", "started", "elapsed", "steps"):
        table.add_column(column, no_wrap=column in ("run", "started"))
    for row in rows:
        workstream_cell = " ".join(
            filter(None, (row["workstream_id"], Stepledger.params_text(row["params"])))
        )
        table.add_row(*plain_cells(row["run_id"], workstream_cell, row["shown_status"], row["started"],
                                   row["elapsed"], row["steps_summary"]))  # fmt: skip
    table_console().print(table)


def logs(
    run_id: Annotated[str | None, typer.Argument(help=RUN_HELP)] = None,
    step_id: Annotated[str | None, typer.Argument(help="A step: its attempts' output.")] = None,
    db: DbOption = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing as the log grows, until the run (or the attempt) ends."
        ),
    ] = False,
) -> None:
    """The run's orchestrator.log (each driver's, for a run on workers), or one step's output (every
    attempt), wherever the run or the step ran."""
    from .tail import print_logs

    with Stepledger(db) as api, api.step_logs(run_id, step_id) as found:
        ended = print_logs(found.sources, follow=follow)
    if ended:  # a run whose orchestrator is gone, or how a followed attempt on a worker ended
        typer.echo(f"-- {ended}", err=True)


def cancel(
    run_id: Annotated[str | None, typer.Argument(help=RUN_HELP)] = None,
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
