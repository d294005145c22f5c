"""Options shared by the commands (one definition each, instead of repeated signatures)."""

from __future__ import annotations

from typing import Annotated

import typer

DB_HELP = (
    "The event log's database: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DBNAME "
    "(default: .stepledger/ledger.db in the current folder)."
)


def _checked_db(url: str | None) -> str | None:
    # A URL the store would refuse (an in-memory or unsupported database) is refused before the
    # command does anything else: `run` starts no worker and creates no folder for it.
    from stepledger.engine.api import check_db_url

    return check_db_url(url)


# Use as `db: DbOption = None`; the value is None when neither --db nor STEPLEDGER_DB is given.
DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="STEPLEDGER_DB", help=DB_HELP, show_envvar=True, callback=_checked_db),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of text.")]
