"""`stepledger db upgrade | current | history | rebuild`: the database's schema and projections."""

from __future__ import annotations

from typing import Annotated

import typer

from stepledger.engine.api import Stepledger

from .common import DbOption
from .output import echo_json

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")]


def register(app: typer.Typer) -> None:
    """Add the `db` command group to `app`."""
    db_app = typer.Typer(no_args_is_help=True, help="The event log's database: migrations and projections.")
    app.add_typer(db_app, name="db")

    @db_app.command("upgrade")
    def upgrade(
        revision: Annotated[str, typer.Option("--revision", help="Target revision.")] = "head",
        db: DbOption = None,
    ) -> None:
        """Migrate the database to the newest schema (new databases are also migrated on first use)."""
        with Stepledger(db) as api:
            before, after = api.db_upgrade(revision)
        if before == after:
            typer.echo(f"already at {after}")
        else:
            typer.echo(f"upgraded {before or 'an empty database'} → {after}")

    @db_app.command("current")
    def current(db: DbOption = None, json_output: JsonOption = False) -> None:
        """Print the database's schema revision and whether it is the newest this stepledger knows."""
        with Stepledger(db) as api:
            answer = api.db_current()
        if json_output:
            echo_json(answer)
        else:
            typer.echo(f"{answer['revision'] or '(none)'} ({answer['state']})")

    @db_app.command("history")
    def history(json_output: JsonOption = False) -> None:
        """List the schema migrations, newest first."""
        for row in Stepledger.db_history():
            if json_output:
                echo_json(row)
            else:
                mark = " (head)" if row["head"] else ""
                message = row["message"].splitlines()[0] if row["message"] else ""
                typer.echo(f"{row['down_revision'] or '<base>'} -> {row['revision']}{mark}, {message}")

    @db_app.command("rebuild")
    def rebuild(db: DbOption = None) -> None:
        """Drop the projections (run and step states) and rebuild them from the log."""
        with Stepledger(db) as api:
            runs, last = api.db_rebuild()
        typer.echo(f"rebuilt the projections of {runs} run(s) from {last} event(s)")
