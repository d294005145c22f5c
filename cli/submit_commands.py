"""`submit`: record a run for the fleet's workers to drive, and print its id at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DbOption, JsonOption
from .output import echo_json
from .workstream_commands import ParamOption, ParamsFileOption, given_params


def submit(
    file: Annotated[Path, typer.Argument(help="The workstream file (JSON or YAML).")],
    db: DbOption = None,
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", help="Override max_workers: attempts on workers at once.")
    ] = None,
    param: ParamOption = None,
    params_file: ParamsFileOption = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", "-q", metavar="NAME", help="The queue whose workers drive the run (default: default)."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Record a run for `stepledger worker`s to drive (docs/workers.md) and print its id at once.

    A worker serving the queue drives the run; if it dies, another takes the run over. Follow it
    with `stepledger status RUN` or `stepledger events RUN --follow`, from any machine. The log
    must be in PostgreSQL.
    """
    from stepledger.engine.api import Stepledger
    from stepledger.engine.read.terminal_text import printable

    params = given_params(param, params_file)
    with Stepledger(db) as api:
        submitted = api.submit(file, max_workers, params, queue)
    for said in submitted.warnings:  # unknown fields, settings not acted on: said once, on stderr
        typer.echo(f"{said.severity}: {printable(said.render())}", err=True)
    if json_output:
        echo_json({"run_id": submitted.run_id})
        return
    typer.echo(submitted.run_id)  # alone on stdout: RUN=$(stepledger submit ws.yaml)


def register(app: typer.Typer) -> None:
    """Add the `submit` command to `app`."""
    app.command()(submit)
