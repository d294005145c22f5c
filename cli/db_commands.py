"""`stepledger db upgrade | current | history | rebuild`: the database's schema and projections."""

from __future__ import annotations

from typing import Annotated

import typer

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
        from stepledger.store import migrate
        from stepledger.store.connect import engine_for

        engine = engine_for(db)
        try:
            before = migrate.database_revision(engine)
            migrate.upgrade(engine, revision)
            after = migrate.database_revision(engine)
        finally:
            engine.dispose()
        if before == after:
            typer.echo(f"already at {after}")
        else:
            typer.echo(f"upgraded {before or 'an empty database'} → {after}")

    @db_app.command("current")
    def current(db: DbOption = None, json_output: JsonOption = False) -> None:
        """Print the database's schema revision and whether it is the newest this stepledger knows."""
        from stepledger.store import migrate
        from stepledger.store.connect import engine_for, resolve_url
        from stepledger.store.errors import NoLog
        from stepledger.store.sqlerrors import safe_url

        try:
            engine = engine_for(db, create=False)  # a question creates no file
        except NoLog:
            revision = None
        else:
            try:
                revision = migrate.database_revision(engine)
            finally:
                engine.dispose()
        known = {r for r, _, _ in migrate.history()}
        heads = migrate.heads()
        state = (
            "head"
            if revision in heads
            else "empty"
            if revision is None
            else "behind"
            if revision in known
            else "newer than this stepledger"
        )
        if json_output:
            echo_json(
                {
                    "url": safe_url(resolve_url(db)),
                    "revision": revision,
                    "head": heads[0] if len(heads) == 1 else heads,
                    "state": state,
                }
            )
        else:
            typer.echo(f"{revision or '(none)'} ({state})")

    @db_app.command("history")
    def history(json_output: JsonOption = False) -> None:
        """List the schema migrations, newest first."""
        from stepledger.store import migrate

        heads = set(migrate.heads())
        for revision, down, message in migrate.history():
            if json_output:
                echo_json(
                    {
                        "revision": revision,
                        "down_revision": down,
                        "message": message,
                        "head": revision in heads,
                    }
                )
            else:
                mark = " (head)" if revision in heads else ""
                typer.echo(
                    f"{down or '<base>'} -> {revision}{mark}, {message.splitlines()[0] if message else ''}"
                )

    @db_app.command("rebuild")
    def rebuild(db: DbOption = None) -> None:
        """Drop the projections (run and step states) and rebuild them from the log."""
        from stepledger.store.connect import check_integrity

        from .common import open_store_for_cli

        store = open_store_for_cli(db)
        try:
            check_integrity(store)  # a projection folded from a damaged log would be wrong too
            runs = store.rebuild_projections()
            last = store.last_position()
        finally:
            store.close()
        typer.echo(f"rebuilt the projections of {runs} run(s) from {last} event(s)")
