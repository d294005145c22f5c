"""`validate`, `plan`, `graph` and `schema`: reading workstream files without running them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepledger.engine.api import MAX_WORKERS, Stepledger, WorkstreamInvalid

from .common import DbOption

if TYPE_CHECKING:
    from stepledger.engine.api import Problem, Workstream

# Run parameters (docs/workstreams.md#run-parameters), shared with `run` (cli/run_commands.py).
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="NAME=VALUE",
        help="Set a run parameter (repeatable); read as ${params.NAME}.",
    ),
]
ParamsFileOption = Annotated[
    Path | None,
    typer.Option("--params-file", metavar="FILE", help="Run parameters from a JSON or YAML object."),
]


def given_params(param: list[str] | None, params_file: Path | None) -> dict[str, Any]:
    """The parameters given on the command line (`--param` over `--params-file`)."""
    return Stepledger.run_params(param or [], params_file)


def _print_problems(problems: list[Problem]) -> None:
    from stepledger.engine.read.terminal_text import printable

    for problem in problems:
        sys.stderr.write(f"{problem.severity}: {printable(problem.render())}\n")


def _load_or_exit(path: Path, params: dict[str, Any] | None = None) -> Workstream:
    """Load a workstream, or print every problem (one line each) and exit 2."""
    try:
        return Stepledger.load_workstream(path, params)
    except WorkstreamInvalid as error:
        _print_problems(list(error.problems))
        raise typer.Exit(2) from None


def validate(
    files: Annotated[list[Path], typer.Argument(help="workstream files (.json, .yaml, .yml)")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list fields not acted on")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per file")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="unknown fields are errors, not warnings")] = False,
    param: ParamOption = None,
    params_file: ParamsFileOption = None,
) -> None:
    """Check workstream files: every problem with its file, JSON path and a fix; exit 2 if any error.

    Unknown fields are warnings (errors with --strict); settings read but not acted on are notes.
    """
    from stepledger.cli.output import echo_json

    failed = False
    params = given_params(param, params_file)
    for path in files:
        ws, problems = Stepledger.validate(path, strict=strict, params=params)
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
    param: ParamOption = None,
    params_file: ParamsFileOption = None,
) -> None:
    """Show the waves, the critical path and the expected time saved by running steps in parallel."""
    from stepledger.cli.output import echo_json

    with Stepledger(db) as api:
        workstream = _load_or_exit(file, given_params(param, params_file))
        result = api.plan(workstream, max_workers=max_workers, history=history)
    if as_json:
        echo_json(result.to_dict())
    else:
        typer.echo(Stepledger.format_plan(result))


def graph(
    file: Annotated[Path, typer.Argument(help="workstream file")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid, dot, svg or png")] = "mermaid",
    out: Annotated[Path | None, typer.Option("--output", "-o", help="write here instead of stdout")] = None,
) -> None:
    """Draw the dependency graph (Mermaid/DOT text; SVG/PNG need Graphviz `dot`)."""
    drawing = Stepledger.graph(_load_or_exit(file), fmt)
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

    typer.echo(json.dumps(Stepledger.schema(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command()(validate)
    app.command()(plan)
    app.command()(graph)
    app.command()(schema)
