"""Alembic environment: runs the migrations on the connection stepledger hands over, or on the URL
from `-x db=URL`, `STEPLEDGER_DB`, `sqlalchemy.url` or the default SQLite file (command-line use).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from stepledger.store.connect import LOCK_OPTION, MIGRATE, make_engine, resolve_url
from stepledger.store.schema import metadata

config = context.config


def run_on(connection: Connection) -> None:
    """Run the pending migrations on `connection` (inside its transaction when it has one)."""
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate the database given to stepledger or named on the command line."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(resolve_url(url or None))
    try:
        with engine.connect() as conn:
            conn.execution_options(**{LOCK_OPTION: MIGRATE})
            with conn.begin():
                run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("stepledger migrations run online only (no --sql)")
run_online()
