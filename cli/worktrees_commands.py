"""`worktrees list` and `worktrees prune`: the git worktrees runs kept (execution.isolation)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import DbOption, JsonOption
from .output import echo_json, plain_cells, table_console

RunArgument = Annotated[
    str | None, typer.Argument(help="Only this run: an id, a unique prefix of it, or `latest`.")
]


def _rows(rows: list[dict[str, Any]], json_output: bool, empty: str, verb: str) -> None:
    if json_output:
        for row in rows:
            echo_json(row)
        return
    if not rows:
        typer.echo(empty)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("RUN", "STEP", "STATE", "BRANCH", "PATH"):
        table.add_column(column)
    for row in rows:
        step = row["step_id"] or "(integration)"
        table.add_row(
            *plain_cells(row["run_id"], step, row["state"] or "-", row["branch"] or "-", row["path"])
        )
    table_console().print(table)
    if verb:
        typer.echo(f"{verb} {len(rows)} worktree{'s' if len(rows) != 1 else ''}")


def list_worktrees(run_id: RunArgument = None, db: DbOption = None, json_output: JsonOption = False) -> None:
    """List the worktrees runs kept in this repository: failed steps', unfinished runs'."""
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        rows = api.worktrees(run_id)
    _rows(rows, json_output, "no stepledger worktrees in this repository", "")


def prune_worktrees(run_id: RunArgument = None, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Remove the kept worktrees and step branches of RUN (default: of every run nobody drives).

    Integration branches (stepledger/RUN) are kept: they hold a run's combined work.
    """
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        rows = api.prune_worktrees(run_id)
    _rows(rows, json_output, "nothing to prune", "removed")


def register(app: typer.Typer) -> None:
    """Add the `worktrees` command group to `app`."""
    group = typer.Typer(no_args_is_help=True, help="Git worktrees of isolated runs (docs/worktrees.md).")
    app.add_typer(group, name="worktrees")
    group.command("list")(list_worktrees)
    group.command("prune")(prune_worktrees)
