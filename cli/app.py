"""The `stepledger` command line: its entry point, and which module provides which command.

`main` runs `stepledger run` and `resume` on a hand parser (run_path.py) whenever it takes the
command line: theirs is the start-up that is timed, and Typer with its copy of click is a
visible part of it (docs/performance.md). Every other command line, help and every parsing error
included, goes to the Typer app, imported only then. `main` is the one place that turns an error into a
red line and an exit code (2 for usage and input errors), never a traceback.

Each `*_commands` module registers its commands with `register(app)`; heavy imports stay inside
the commands so `--help` is fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

COMMAND_MODULES: dict[str, tuple[str, ...]] = {  # module -> the top-level commands it registers
    "workstream_commands": ("validate", "plan", "graph", "schema"),
    "run_commands": ("run", "resume", "status", "runs", "logs", "cancel"),
    "events_commands": ("events",),
    "db_commands": ("db",),
    "audit_commands": ("audit",),
    "replay_commands": ("replay",),
    "operator_commands": ("retry", "skip", "mark-passed"),
    "ui_commands": ("ui",),
    "chaos_commands": ("chaos",),
    "worktrees_commands": ("worktrees",),
    "worker_commands": ("worker", "fleet"),
    "submit_commands": ("submit",),
}


def _installed_version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("stepledger")


def _print_version(asked: bool) -> None:
    import typer

    if asked:
        typer.echo(f"stepledger {_installed_version()}")
        raise typer.Exit(0)


def version() -> None:
    """Print the installed version."""
    import typer

    typer.echo(_installed_version())


def build_app(command: str | None = None) -> typer.Typer:
    """The Typer app with every command, or only with the module that provides `command`.

    Typer builds a click command from every registered function's signature on each invocation;
    for all the commands that was a visible part of every `stepledger run`. The one named on the command
    line is enough to run it; help, a bare `stepledger` or an unknown name get them all.
    """
    import typer

    # Defined here, where Typer is imported: the option is the parameter's default value.
    def _root(
        show_version: bool = typer.Option(
            False, "--version", "-V", help="Print the installed version and exit.", is_eager=True,
            callback=_print_version,
        ),
    ) -> None:  # fmt: skip
        """Crash-safe workstream orchestrator: every state change is an event in a SQL log."""

    app = typer.Typer(
        no_args_is_help=True,
        # `--install-completion` / `--show-completion` for bash, zsh, fish and PowerShell.
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        pretty_exceptions_enable=False,
        # click's plain help instead of Typer's rich one: rendering help with rich imports
        # rich's Markdown (markdown-it, pygments) and tracebacks, which made `--help` the slowest
        # command to start (docs/performance.md). help_text.polish keeps each command's summary whole.
        rich_markup_mode=None,
        help="Crash-safe workstream orchestrator: every state change is an event in a SQL log.",
    )
    app.callback()(_root)
    app.command()(version)
    owners = [m for m, names in COMMAND_MODULES.items() if command in names]
    for name in owners or COMMAND_MODULES:
        importlib.import_module(f"stepledger.cli.{name}").register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    # `from stepledger.cli.app import app` (tests, CliRunner) gets the app with every command.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    """Entry point of the console script: run the command, turning known errors into one red line."""
    from .output import known_error_types, print_error
    from .streams import outlive_readers

    outlive_readers()  # a closed pipe or terminal must not kill a run nor change an exit code
    try:
        if sys.argv[1:2] in (["run"], ["resume"]):
            from .run_path import run_from_command_line

            code = run_from_command_line(sys.argv[1], sys.argv[2:])
            if code is not None:
                exit_now(code)
        _run_typer_app()
    except known_error_types() as error:  # raised outside Typer's own handling
        exit_now(print_error(error))
    except SystemExit as done:  # Typer ends every command with sys.exit
        exit_now(done.code)
    except KeyboardInterrupt:  # Ctrl-C before a run was recorded (a run's own Ctrl-C is its session's)
        exit_now(130)


def _run_typer_app() -> None:
    # Typer (below 0.29, as pinned) carries its own copy of click; its usage errors are ours to
    # print, as one line instead of a usage block and a box.
    from typer._click.exceptions import UsageError
    from typer.main import get_command

    from .help_text import polish
    from .output import print_error

    command = get_command(build_app(sys.argv[1] if len(sys.argv) > 1 else None))
    polish(command)
    try:
        # Not standalone, so that a usage error reaches us; a bare `stepledger` still shows help.
        code = command(standalone_mode=len(sys.argv) <= 1, prog_name="stepledger")
    except UsageError as error:
        where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        exit_now(print_error(UsageProblem(f"{error.format_message()}{where}")))
    exit_now(code if isinstance(code, int) else 0)


class UsageProblem(Exception):
    """A command line Typer could not parse: exit 2, like any bad input."""

    exit_code = 2


def exit_now(code: object) -> None:
    """Leave without the interpreter's tear-down, once everything the command wrote is flushed.

    Tearing down the modules and objects of a command (SQLAlchemy, Typer, a run's state) took a
    large share of the seed run's time after the run had finished. Nothing is lost by skipping
    it: the store is closed by the command, the run logs are line-buffered, workers are stopped by
    the pool, and every event was committed before it was acted on.
    """
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what sys.exit("message") would print
        code = 1
    from .code_cache import save
    from .streams import flush_quietly

    flush_quietly()  # a reader that went away (`| head`) changes nothing of the exit code
    save()  # the dataclasses' code compiled anew, for the next command
    os._exit(code or 0)
