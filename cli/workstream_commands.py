"""`validate`, `plan`, `graph` and `schema`: reading workstream files without running them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stepledger.engine.limits import MAX_WORKERS

from .common import DbOption

if TYPE_CHECKING:
    from stepledger.engine.workstream import Problem, Workstream


def _print_problems(problems: list[Problem]) -> None:
    from stepledger.engine.terminal_text import printable  # a file's text may hold escape sequences

    for problem in problems:
        sys.stderr.write(f"{problem.severity}: {printable(problem.render())}\n")


def _load_or_exit(path: Path) -> Workstream:
    """Load a workstream, or print every problem (one line each) and exit 2."""
    from stepledger.engine.workstream import WorkstreamInvalid, load_workstream

    try:
        return load_workstream(path)
    except WorkstreamInvalid as error:
        _print_problems(list(error.problems))
        raise typer.Exit(2) from None


def validate(
    files: Annotated[list[Path], typer.Argument(help="workstream files (.json, .yaml, .yml)")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list fields not acted on")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file")] = False,
) -> None:
    """Check workstream files: every problem with its file, JSON path and a fix; exit 2 if any."""
    from stepledger.cli.output import echo_json
    from stepledger.engine.workstream import validate_problems

    failed = False
    for path in files:
        ws, problems = validate_problems(path)
        errors = [p for p in problems if p.severity == "error"]
        failed = failed or bool(errors)
        if as_json:
            echo_json(
                {
                    "file": str(path),
                    "valid": not errors,
                    "workstream_id": ws.id if ws else None,
                    "steps": len(ws.steps) if ws else None,
                    "problems": [p.to_dict() for p in problems],
                    "not_acted_on": list(ws.not_acted_on) if ws else [],
                }
            )
            continue
        _print_problems(problems)
        if errors or ws is None:
            continue
        deps = sum(len(s.requires) for s in ws.steps)
        steps = f"{len(ws.steps)} step{'s' * (len(ws.steps) != 1)}"
        counts = f"{steps}, {deps} dependenc{'y' if deps == 1 else 'ies'}"
        typer.echo(f"ok: {path} ({ws.id}: {counts})")
        if verbose:
            for field_path in ws.not_acted_on:
                typer.echo(f"  not acted on: {field_path}")
    if failed:
        raise typer.Exit(2)


def plan(
    file: Annotated[Path, typer.Argument(help="workstream file")],
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", help=f"pool size (1 to {MAX_WORKERS})")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the plan as one JSON object")] = False,
    db: DbOption = None,
    history: Annotated[
        bool, typer.Option("--history/--no-history", help="use step durations measured by earlier runs")
    ] = True,
) -> None:
    """Show the waves, the critical path and the expected time saved by running steps in parallel."""
    from stepledger.cli.output import echo_json
    from stepledger.engine.prerun import check_max_workers
    from stepledger.engine.workstream import format_plan
    from stepledger.engine.workstream import plan as make_plan

    check_max_workers(max_workers)
    workstream = _load_or_exit(file)
    measured = _measured_durations(workstream.id, db) if history else {}
    result = make_plan(workstream, max_workers=max_workers, durations=measured)
    if as_json:
        echo_json(result.to_dict())
    else:
        typer.echo(format_plan(result))


def _measured_durations(workstream_id: str, db: str | None) -> dict[str, float]:
    """Median durations of earlier runs, when there is a log to read (a plan never creates one)."""
    import os

    from stepledger.store.connect import default_url

    if db is None and not os.path.exists(default_url(".").removeprefix("sqlite:///")):
        return {}
    from stepledger.engine.audit.durations import historical_durations
    from stepledger.store.errors import NoLog

    from .common import open_store_for_cli

    try:
        store = open_store_for_cli(db, create=False)
    except NoLog:
        return {}  # a database without a log yet: a plan without history
    try:
        return historical_durations(store, workstream_id)
    finally:
        store.close()


def graph(
    file: Annotated[Path, typer.Argument(help="workstream file")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid, dot, svg or png")] = "mermaid",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Draw the dependency graph (Mermaid/DOT text; SVG/PNG need Graphviz `dot`)."""
    from stepledger.engine.workstream import render_graph

    drawing = render_graph(_load_or_exit(file), fmt)
    data = drawing.encode() if isinstance(drawing, str) else drawing
    if out is not None:
        out.write_bytes(data)
        typer.echo(f"wrote {out}", err=True)
    elif fmt == "png" and sys.stdout.isatty():
        raise typer.BadParameter("PNG is binary: write it to a file with -o graph.png", param_hint="--output")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def schema() -> None:
    """Print the JSON Schema of workstream files (for editors and other checkers)."""
    import json

    from stepledger.engine.workstream import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command()(validate)
    app.command()(plan)
    app.command()(graph)
    app.command()(schema)
