"""Options and helpers shared by the commands that use the event log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stepledger.store.port import EventStore

DB_HELP = "SQLAlchemy URL of the event log (default: .stepledger/ledger.db in the current folder)."


def _checked_db(url: str | None) -> str | None:
    # A URL the store would refuse (an in-memory or unsupported database) is refused before the
    # command does anything else: `run` starts no worker and creates no folder for it.
    if url:
        from stepledger.store.dbapi import check_url

        check_url(url)
    return url


# Use as `db: DbOption = None`; the value is None when neither --db nor STEPLEDGER_DB is given.
DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="STEPLEDGER_DB", help=DB_HELP, show_envvar=True, callback=_checked_db),
]


def db_option() -> typer.models.OptionInfo:
    """A fresh `--db` option (envvar STEPLEDGER_DB), for commands that declare defaults the old way."""
    return typer.Option(
        None, "--db", envvar="STEPLEDGER_DB", help=DB_HELP, show_envvar=True, callback=_checked_db
    )


def open_store_for_cli(
    db: str | None, workdir: str = ".", migrate: bool = True, create: bool = True
) -> EventStore:
    """Open the store for a command; failures raise StoreError, which `main` prints as one line (exit 2).

    Commands that only read pass `create=False`: they never create a database file or tables.
    """
    from stepledger.store.connect import open_store

    return open_store(db, workdir=workdir, migrate=migrate, create=create)
