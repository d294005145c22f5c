"""`worker`: a long-lived process that runs the attempts of runs on workers and drives submitted
runs; `fleet attempts`: where those attempts ran, and which wait for a worker; `fleet log`: an
attempt's log from any machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DbOption, JsonOption
from .output import echo_json, plain_cells, table_console


def worker(
    db: DbOption = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Attempts this worker runs at once.")
    ] = 4,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", "-q", metavar="NAME", help="A queue to serve (repeatable; default: default)."
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", metavar="SECONDS", help="After a stop, how long running attempts may take to finish."
        ),
    ] = 60.0,
    workdir: Annotated[
        Path,
        typer.Option("--workdir", help="Where this worker runs attempts: its checkout of the project."),
    ] = Path("."),
    drive: Annotated[
        int,
        typer.Option("--drive", metavar="N", help="Submitted runs this worker drives at once (0: none)."),
    ] = 4,
) -> None:
    """Run attempts of runs on the fleet and drive submitted runs (docs/workers.md), until SIGTERM
    or Ctrl-C.

    A stop takes no new attempt and lets running ones finish for up to --grace seconds, then hands
    them back interrupted (their runs retry them elsewhere); a second stop does that at once. The
    runs it drives go to other workers at once. The log must be in PostgreSQL.
    """
    from stepledger.engine.api import Stepledger

    with Stepledger(db, workdir) as api:
        api.serve_worker(concurrency, list(queue or []), grace, drive)


def attempts(
    run_id: Annotated[
        str, typer.Argument(help="The run: an id, a unique prefix of it, or `latest`.")
    ] = "latest",
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Where each attempt of a run on workers ran (host, worker) and how it ended; queued ones wait."""
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        rows = api.fleet_attempts(run_id)
    if json_output:
        for row in rows:
            echo_json(row)
        return
    if not rows:
        typer.echo("no attempt of this run went to workers")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("STEP", "ATTEMPT", "STATE", "HOST", "WORKER", "OUTCOME"):
        table.add_column(column)
    for row in rows:
        if row["state"] == "queued" and row.get("served"):  # a live worker serves its queue
            outcome = f"queued on {row['queue']}"
        elif row["state"] == "queued":
            outcome = f"waiting for a worker on queue {row['queue']} (no live worker serves it)"
        elif row["state"] == "claimed":
            outcome = "running"
        else:
            outcome = "passed" if row["passed"] else f"failed ({row['reason']})"
        cells = (
            row["step_id"],
            str(row["attempt"]),
            row["state"],
            row["host"] or "-",
            row["worker"] or "-",
            outcome,
        )
        table.add_row(*plain_cells(*cells))
    table_console().print(table)


def log(
    run_id: Annotated[str, typer.Argument(help="The run: an id, a unique prefix of it, or `latest`.")],
    step_id: Annotated[str, typer.Argument(help="The step.")],
    attempt: Annotated[
        int | None, typer.Option("--attempt", "-a", help="This attempt (default: the latest).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Print the end of a step's log from the database, wherever the step ran (docs/workers.md)."""
    import sys

    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        number, data = api.fleet_log(run_id, step_id, attempt)
    typer.echo(f"-- {step_id} attempt {number}", err=True)
    sys.stdout.write(data.decode("utf-8", "replace"))


def register(app: typer.Typer) -> None:
    """Add the `worker` command and the `fleet` group to `app`."""
    app.command("worker")(worker)
    group = typer.Typer(no_args_is_help=True, help="Runs on workers (docs/workers.md).")
    app.add_typer(group, name="fleet")
    group.command("attempts")(attempts)
    group.command("log")(log)
