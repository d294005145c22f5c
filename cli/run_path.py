"""`stepledger run` without Typer: its command line parsed by hand, and the run itself.

`run` is the command whose start-up is timed (a short run is mostly start-up). Importing Typer and
its copy of click, and building a click command from the function's signature, cost ~40 ms of it
(docs/performance.md). `parse_run_line` takes the command lines people and scripts type — FILE and
`run`'s options, in any order, as `--opt VALUE` or `--opt=VALUE` — and declines every other one
(help, `--detach`, an unknown or malformed option, a value that does not convert, shell
completion): those go to the Typer command, so help, errors and exit codes stay exactly Typer's.
tests/cli/test_run_path.py holds the parser to Typer's parse of the same lines.

`run_workstream` is the run itself, for both paths: `cli/run_commands.py`'s `run` calls it too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# `run`'s options (cli/run_commands.py) that this parser takes: option -> (parameter, kind).
# A flag takes no value; "text", "int" and "path" take one; "many" takes one each time it is given.
OPTIONS: dict[str, tuple[str, str]] = {
    "--db": ("db", "text"),
    "--max-workers": ("max_workers", "int"),
    "--json": ("json_output", "flag"),
    "--run-id": ("run_id", "text"),
    "--param": ("param", "many"),
    "-p": ("param", "many"),
    "--params-file": ("params_file", "path"),
    "--merge-into": ("merge_into", "text"),
    "--on-workers": ("on_workers", "flag"),
}
DB_ENVVAR = "STEPLEDGER_DB"
COMPLETION_ENVVAR = "_STEPLEDGER_COMPLETE"  # Typer's shell completion asks through this variable


def parse_run_line(args: list[str], environ: dict[str, str] | os._Environ[str]) -> dict[str, Any] | None:
    """The parameters of `run` for the words after `run`, as Typer would give them; None to decline."""
    if environ.get(COMPLETION_ENVVAR):
        return None
    given: dict[str, Any] = {
        "file": None, "db": None, "max_workers": None, "json_output": False, "run_id": None,
        "param": None, "params_file": None, "merge_into": None, "on_workers": False,
    }  # fmt: skip
    words = list(args)
    while words:
        word = words.pop(0)
        if not word.startswith("-"):
            if given["file"] is not None or not word:
                return None  # a second argument, or an empty one: Typer says what is wrong
            given["file"] = Path(word)
            continue
        name, has_value, value = word.partition("=")
        if name not in OPTIONS or (has_value and name == "-p"):
            return None  # help, --detach, an unknown option, `--`, `-pNAME=VALUE` run-together
        parameter, kind = OPTIONS[name]
        if kind == "flag":
            if has_value:
                return None
            given[parameter] = True
            continue
        if not has_value:
            if not words:
                return None
            value = words.pop(0)
        if not value or value.startswith("-"):
            return None  # an empty value, or one that could be an option: Typer's reading decides
        if kind == "int":
            try:
                given[parameter] = int(value)  # click's INT converts with int() too
            except ValueError:
                return None
        elif kind == "path":
            given[parameter] = Path(value)
        elif kind == "many":
            given[parameter] = [*(given[parameter] or []), value]
        else:
            given[parameter] = value  # given twice, the last one counts, as in click
    if given["file"] is None:
        return None
    if given["db"] is None:
        given["db"] = environ.get(DB_ENVVAR) or None  # an empty variable is no value, as in click
    return given


def run_from_command_line(args: list[str]) -> int | None:
    """Run `stepledger run ARGS` and return its exit code, or None if the parser declines them."""
    given = parse_run_line(args, os.environ)
    if given is None:
        return None
    from stepledger.engine.api import check_db_url

    db = check_db_url(given.pop("db"))  # as the option's callback does, before anything else
    return run_workstream(db=db, **given)


def run_workstream(
    *,
    file: Path,
    db: str | None,
    max_workers: int | None,
    json_output: bool,
    run_id: str | None,
    param: list[str] | None,
    params_file: Path | None,
    merge_into: str | None,
    on_workers: bool,
) -> int:
    """Run a workstream in the foreground, printing as `run` prints; the exit code its outcome calls for."""
    # The engine's API alone first: the pool starts as soon as the file is loaded and checked, so
    # the workers' interpreters boot while this process imports the rest.
    from stepledger.engine.api import Stepledger

    params = Stepledger.run_params(param or [], params_file)
    with Stepledger(db) as api:
        prepared = api.prepare_run(
            file, max_workers, run_id=run_id, merge_into=merge_into, params=params, on_workers=on_workers
        )
        from stepledger.engine.read.terminal_text import printable

        from .run_view import EXIT_BY_OUTCOME, print_end, print_preamble, view_for

        for said in prepared.warnings:  # unknown fields, settings not acted on: said once, on stderr
            sys.stderr.write(f"{said.severity}: {printable(said.render())}\n")
            sys.stderr.flush()
        view = view_for(json_output, len(prepared.workstream.steps))
        try:
            print_preamble(view, prepared, api)
            report = api.run(prepared, reporter=view)
            print_end(view, report)
        finally:
            view.close()
    return EXIT_BY_OUTCOME.get(report.outcome, 1)
