"""Options and helpers shared by the commands that use the event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stepledger.store.port import EventStore

DB_HELP = "SQLAlchemy URL of the event log (default: .stepledger/ledger.db in the current folder)."

# Use as `db: DbOption = None`; the value is None when neither --db nor STEPLEDGER_DB is given.
DbOption = Annotated[str | None, typer.Option("--db", envvar="STEPLEDGER_DB", help=DB_HELP, show_envvar=True)]


def db_option() -> typer.models.OptionInfo:
    """A fresh `--db` option (envvar STEPLEDGER_DB), for commands that declare defaults the old way."""
    return typer.Option(None, "--db", envvar="STEPLEDGER_DB", help=DB_HELP, show_envvar=True)


def open_store_for_cli(db: str | None, workdir: str = ".", migrate: bool = True) -> EventStore:
    """Open the store for a command; failures raise StoreError, which `main` prints as one line (exit 2)."""
    from stepledger.store.connect import open_store

    return open_store(db, workdir=workdir, migrate=migrate)
