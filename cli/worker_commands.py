"""`worker`: a long-lived process that runs the attempts of runs started with `run --on-workers`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DbOption


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
) -> None:
    """Run attempts of runs on the fleet (docs/workers.md), until SIGTERM or Ctrl-C.

    A stop takes no new attempt and lets running ones finish for up to --grace seconds, then hands
    them back interrupted (their runs retry them elsewhere); a second stop does that at once. The
    log must be in PostgreSQL.
    """
    from stepledger.engine.api import Stepledger

    with Stepledger(db, workdir) as api:
        api.serve_worker(concurrency, list(queue or []), grace)


def register(app: typer.Typer) -> None:
    """Add the `worker` command to `app`."""
    app.command("worker")(worker)
