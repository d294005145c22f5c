"""The `stepledger` command line: one Typer app gathering the command groups.

Each `*_commands` module registers its commands with `register(app)`; heavy imports stay inside
the commands so `--help` is fast. `main` is the one place that turns an error into a red line and
an exit code (2 for usage and input errors), never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Crash-safe workstream orchestrator: every state change is an event in a SQL log.",
)

COMMAND_MODULES = (
    "workstream_commands",  # validate, plan, graph, schema
    "run_commands",  # run, resume, status, runs, logs, cancel, replay, ...
    "events_commands",  # events
    "db_commands",  # db upgrade | current | history | rebuild
    "audit_commands",  # audit ...
    "replay_commands",  # replay [--at] [--verify]
    "operator_commands",  # retry, skip, mark-passed
)


@app.callback()
def _root() -> None:
    """Crash-safe workstream orchestrator: every state change is an event in a SQL log."""


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("stepledger"))


for _name in COMMAND_MODULES:
    importlib.import_module(f"stepledger.cli.{_name}").register(app)


def main() -> None:
    """Entry point of the console script: run the app, turning known errors into one red line."""
    from .output import known_error_types, print_error

    try:
        app(standalone_mode=True)
    except known_error_types() as error:  # raised outside Typer's own handling
        _exit_now(print_error(error))
    except SystemExit as done:  # Typer ends every command with sys.exit
        _exit_now(done.code)


def _exit_now(code: object) -> None:
    """Leave without the interpreter's tear-down, once everything the command wrote is flushed.

    Tearing down the modules and objects of a command (SQLAlchemy, Typer, a run's state) took
    ~0.2 s after a run had finished, a sixth of the seed run's budget. Nothing is lost by skipping
    it: the store is closed by the command, the run logs are line-buffered, workers are stopped by
    the pool, and every event was committed before it was acted on.
    """
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what sys.exit("message") would print
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # the reader went away (`| head`), or stdout is closed
        code = code or 1
    os._exit(code or 0)
