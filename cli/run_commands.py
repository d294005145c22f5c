"""`run`, `resume`, `status`, `runs`, `logs` and `cancel`: driving runs and looking at them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stepledger.engine.limits import MAX_WORKERS

from .common import DbOption
from .output import echo_json, plain_cells

if TYPE_CHECKING:
    from stepledger.engine.model import Workstream
    from stepledger.engine.runs import RunResult
    from stepledger.store.port import EventStore

    from .run_view import JsonView, LiveView, PlainView

    RunView = PlainView | JsonView | LiveView

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of text.")]
EXIT_BY_OUTCOME = {"passed": 0, "interrupted": 130}
# Bounds are checked by the engine (one line, exit 2) rather than by Typer's min/max, whose usage
# error is a multi-line box.
WORKERS_HELP = f"Override max_workers (1 to {MAX_WORKERS})."


def _view(json_output: bool, total_steps: int) -> RunView:
    from .run_view import JsonView, LiveView, PlainView

    if json_output:
        return JsonView()
    if sys.stdout.isatty():
        return LiveView(total_steps)
    return PlainView()


def run(
    file: Annotated[Path, typer.Argument(help="The workstream file (JSON or YAML).")],
    db: DbOption = None,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help=WORKERS_HELP)] = None,
    json_output: JsonOption = False,
) -> None:
    """Run a workstream: its steps in parallel, every state change recorded in the log."""
    import queue

    from stepledger.engine.execution.pool import WorkerPool
    from stepledger.engine.model import worker_limit
    from stepledger.engine.prerun import check_max_workers, check_run_inputs
    from stepledger.engine.workstream import check_tools_or_raise, load_workstream

    check_max_workers(max_workers)
    workstream = load_workstream(file)
    check_tools_or_raise(workstream, Path.cwd())
    check_run_inputs(workstream, Path.cwd(), max_workers)  # start_run checks again: it is the API
    # The workers' interpreters boot while this process imports the store and opens the log.
    pool = WorkerPool(worker_limit(workstream, max_workers), queue.SimpleQueue())
    pool.start()
    try:
        from stepledger.engine.runs import new_run_id, start_run
        from stepledger.store.connect import open_store

        run_id = new_run_id()
        store = open_store(db)
        view = _view(json_output, len(workstream.steps))
        try:
            _print_preamble(view, run_id, workstream, pool.size)
            result = start_run(store, workstream, max_workers=max_workers, reporter=view, run_id=run_id,
                               pool_factory=lambda size, results: pool)  # fmt: skip
            _finish(view, store, result)
        finally:
            view.close()
            store.close()
    finally:
        pool.shutdown(kill_running=True)
    raise typer.Exit(EXIT_BY_OUTCOME.get(result.outcome, 1))


def _print_preamble(view: RunView, run_id: str, workstream: Workstream, workers: int) -> None:
    edges = sum(len(s.requires) for s in workstream.steps)
    view.line(f"run {run_id}")
    view.line(f"✓ Loading workstream: {workstream.id}")
    view.line("✓ Validating schema")
    view.line("✓ Checking file scope conflicts")
    view.line(f"✓ Building dependency graph ({len(workstream.steps)} steps, {edges} dependencies)")
    view.line(f"✓ Initializing worker pool (max_workers={workers})")
    view.line()
    mode = "in parallel" if workers > 1 else "one at a time"
    view.line(f"⟳ Executing steps {mode}:")


def _finish(view: RunView, store: EventStore, result: RunResult) -> None:
    from stepledger.engine.leases import lease_seconds
    from stepledger.engine.outages import PatientStore
    from stepledger.engine.summary import MeasuredTimes

    from .run_view import print_summary

    # The reactor's own fold is the run's final state, and its run.finished event carries the
    # measured times: only the acceptance results are read back, not the whole log.
    run, run_id = result.run, result.run_id
    wanted = ["step.acceptance_tests_recorded", "run.finished"]
    # The run is over; a database that drops away just now is waited for as the reactor would.
    patient = PatientStore(store, lease_seconds(), on_outage=view.line)
    events = list(patient.find_events(run_id=run_id, types=wanted))
    finished = [e.payload for e in events if e.type == "run.finished"]
    times = MeasuredTimes(finished[-1]["elapsed_s"], finished[-1]["sequential_s"]) if finished else None
    print_summary(view, run, [e for e in events if e.type != "run.finished"], times)
    if run.status == "interrupted":
        view.line(f"  Stopped. Continue with: stepledger resume {run_id}")
    elif run.status != "passed":
        view.line(f"  Inspect with: stepledger status {run_id}   (logs: stepledger logs {run_id})")


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
    from stepledger.engine.prerun import check_max_workers
    from stepledger.store.connect import open_store

    check_max_workers(max_workers)
    store = open_store(db)
    try:
        outcome = resume_with_view(store, run_id, json_output, use_current_file, max_workers)
    finally:
        store.close()
    raise typer.Exit(EXIT_BY_OUTCOME.get(outcome, 1))


def resume_with_view(
    store: EventStore,
    run_id: str,
    json_output: bool,
    use_current_file: bool = False,
    max_workers: int | None = None,
) -> str:
    """Resume `run_id` printing what `resume` prints; return the run's outcome."""
    from stepledger.engine.runs import load_run, resume_run, workstream_file_changed

    run = load_run(store, run_id)
    view = _view(json_output, len(run.workstream.get("steps", [])) or 1)
    try:
        view.line(f"run {run_id} (resuming)")
        if workstream_file_changed(run) and not use_current_file:
            view.line(f"! {run.source_path} changed since the run started; resuming with the recorded "
                      "workstream (use --use-current-file to take the file as it is now)")  # fmt: skip
        result = resume_run(store, run_id, use_current_file=use_current_file, max_workers=max_workers,
                            reporter=view, run=run)  # fmt: skip
        _finish(view, store, result)
    finally:
        view.close()
    return result.outcome


def status(
    run_id: Annotated[str | None, typer.Argument(help="The run (default: the latest).")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Each step of a run: its state, attempt, duration and last error."""
    from stepledger.engine.inspect import run_status
    from stepledger.store.connect import open_store

    store = open_store(db, create=False)
    try:
        report = run_status(store, run_id)
    finally:
        store.close()
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
    from stepledger.engine.inspect import list_runs
    from stepledger.store.connect import open_store

    store = open_store(db, create=False)
    try:
        rows = list_runs(store)
    finally:
        store.close()
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
    from stepledger.engine.inspect import log_files
    from stepledger.store.connect import open_store

    from .tail import print_files

    store = open_store(db, create=False)
    try:
        paths = log_files(store, run_id, step_id)
    finally:
        store.close()
    print_files(paths, follow=follow)


def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    db: DbOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the log).")] = "",
) -> None:
    """Stop a run from another terminal: kill its running steps, start nothing new."""
    from stepledger.engine.operator import cancel_run
    from stepledger.store.connect import open_store

    store = open_store(db)
    try:
        message = cancel_run(store, run_id, reason=reason)
    finally:
        store.close()
    typer.echo(message)


def register(app: typer.Typer) -> None:
    """Add the run commands to `app`."""
    for command in (run, resume, status, runs, logs, cancel):
        app.command()(command)
