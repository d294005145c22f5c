"""`stepledger run` and `resume` without Typer: their command lines parsed by hand, and the runs.

A short run is mostly start-up, and importing Typer with its copy of click, then building a click
command from the function's signature, was a visible part of it (docs/performance.md).
`parse_line` takes the command lines people and scripts type — the argument and the command's
options, in any order, as `--opt VALUE` or `--opt=VALUE` — and declines every other one (help,
`--detach`, an unknown or malformed option, a value that does not convert, shell completion):
those go to the Typer command, so help, errors and exit codes stay exactly Typer's.
tests/cli/test_run_path.py holds the parser to Typer's parse of the same lines.

`run_workstream` and `resume_run` are the commands' bodies, for both paths: the Typer commands of
`cli/run_commands.py` call them too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# The options of `run` and `resume` (cli/run_commands.py) that this parser takes:
# option -> (parameter, kind). A flag takes no value; "text", "int" and "path" take one; "many"
# takes one each time it is given.
RUN_OPTIONS: dict[str, tuple[str, str]] = {
    "--db": ("db", "text"),
    "--max-workers": ("max_workers", "int"),
    "--json": ("json_output", "flag"),
    "--run-id": ("run_id", "text"),
    "--param": ("param", "many"),
    "-p": ("param", "many"),
    "--params-file": ("params_file", "path"),
    "--merge-into": ("merge_into", "text"),
    "--on-workers": ("on_workers", "flag"),
    "--no-takeover": ("no_takeover", "flag"),
    "--queue": ("queue", "text"),
    "-q": ("queue", "text"),
}
RESUME_OPTIONS: dict[str, tuple[str, str]] = {
    "--db": ("db", "text"),
    "--use-current-file": ("use_current_file", "flag"),
    "--max-workers": ("max_workers", "int"),
    "--json": ("json_output", "flag"),
    "--submit": ("submit", "flag"),
}
# command -> (its argument: parameter, kind, required; its options)
COMMANDS: dict[str, tuple[tuple[str, str, bool], dict[str, tuple[str, str]]]] = {
    "run": (("file", "path", True), RUN_OPTIONS),
    "resume": (("run_id", "text", False), RESUME_OPTIONS),
}
DB_ENVVAR = "STEPLEDGER_DB"
COMPLETION_ENVVAR = "_STEPLEDGER_COMPLETE"  # Typer's shell completion asks through this variable


def parse_line(
    command: str, args: list[str], environ: dict[str, str] | os._Environ[str]
) -> dict[str, Any] | None:
    """The parameters of `command` for the words after it, as Typer would give them; None to decline."""
    if environ.get(COMPLETION_ENVVAR) or command not in COMMANDS:
        return None
    (argument, argument_kind, required), options = COMMANDS[command]
    given: dict[str, Any] = {argument: None}
    for parameter, kind in options.values():
        given[parameter] = False if kind == "flag" else None
    words = list(args)
    while words:
        word = words.pop(0)
        if not word.startswith("-"):
            if given[argument] is not None or not word:
                return None  # a second argument, or an empty one: Typer says what is wrong
            given[argument] = Path(word) if argument_kind == "path" else word
            continue
        name, has_value, value = word.partition("=")
        if name not in options or (has_value and not name.startswith("--")):
            return None  # help, --detach, an unknown option, `--`, `-pNAME=VALUE` run-together
        parameter, kind = options[name]
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
    if required and given[argument] is None:
        return None
    if given["db"] is None:
        given["db"] = environ.get(DB_ENVVAR) or None  # an empty variable is no value, as in click
    return given


def run_from_command_line(command: str, args: list[str]) -> int | None:
    """Run `stepledger COMMAND ARGS` (`run` or `resume`); its exit code, or None if the parser declines."""
    given = parse_line(command, args, os.environ)
    if given is None:
        return None
    from stepledger.engine.api import check_db_url

    db = check_db_url(given.pop("db"))  # as the option's callback does, before anything else
    if command == "run":
        return run_workstream(db=db, **given)
    return resume_run(db=db, **given)


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
    no_takeover: bool = False,
    queue: str | None = None,
) -> int:
    """Run a workstream in the foreground, printing as `run` prints; the exit code its outcome calls for."""
    # The engine's API alone first: the pool starts as soon as the file is loaded and checked, so
    # the workers' interpreters boot while this process imports the rest.
    from stepledger.engine.api import Stepledger

    params = Stepledger.run_params(param or [], params_file)
    with Stepledger(db) as api:
        prepared = api.prepare_run(
            file, max_workers, run_id=run_id, merge_into=merge_into, params=params, on_workers=on_workers,
            takeover=not no_takeover, drive_queue=queue,
        )  # fmt: skip
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


def resume_run(
    *,
    run_id: str | None,
    db: str | None,
    use_current_file: bool,
    max_workers: int | None,
    json_output: bool,
    submit: bool = False,
) -> int:
    """Continue a run whose orchestrator stopped, printing as `resume` prints; the exit code.
    `submit`: hand a run on workers back to the fleet instead (`resume --submit`)."""
    from stepledger.engine.api import Stepledger

    if submit:
        return _hand_to_fleet(run_id, db, json_output, use_current_file, max_workers)
    with Stepledger(db) as api:
        chosen = api.resolve_run(run_id, unfinished=True)
        if run_id != chosen and not json_output:
            newest = run_id in (None, "latest")
            sys.stdout.write(
                f"resuming {chosen}" + (" (the newest unfinished run of this log)" if newest else "") + "\n"
            )
            sys.stdout.flush()
        from .run_view import EXIT_BY_OUTCOME, resume_with_view

        outcome = resume_with_view(api, chosen, json_output, use_current_file, max_workers)
    return EXIT_BY_OUTCOME.get(outcome, 1)


def _hand_to_fleet(
    run_id: str | None, db: str | None, json_output: bool, use_current_file: bool, max_workers: int | None
) -> int:
    """`resume --submit`: the run goes back to the fleet; this says where and returns (exit 0)."""
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        handed = api.submit_resume(run_id, use_current_file=use_current_file, max_workers=max_workers)
    if json_output:
        import json

        line = {"run_id": handed.run_id, "queue": handed.queue, "enqueued": handed.enqueued}
        sys.stdout.write(json.dumps(line) + "\n")
        return 0
    said = f"handed run {handed.run_id} to the fleet: a worker serving queue {handed.queue} resumes it\n"
    if not handed.enqueued:
        said += "  (a drive of it was already waiting for a worker)\n"
    sys.stdout.write(said + f"  follow it: stepledger events {handed.run_id} --follow\n")
    return 0
