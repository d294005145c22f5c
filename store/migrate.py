"""Alembic, driven from code: the migrations ship inside the package, so an installed stepledger
migrates its database without an `alembic.ini` (the one at the repository root is for developers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dbapi import Database, Mode, no_log
from .ddl import HEAD_REVISION, TABLES
from .engines import LOCK_OPTION, MIGRATE
from .errors import SchemaTooNew, StoreError
from .sqlerrors import safe_url, translating
from .views import view_statements

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Any:
    """An Alembic `Config` for the package's migrations (and this connection or URL, if given)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def script_directory() -> Any:
    """The Alembic script directory of the package's migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, None for a database never migrated."""
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def database_revision(engine: Engine) -> str | None:
    """The revision the database behind `engine` is at (None if never migrated)."""
    with translating(_url(engine)), engine.connect() as conn:
        return current_revision(conn)


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    # One transaction under the migration lock, so two processes opening a new database at once
    # cannot both migrate it; Alembic sees the transaction and runs inside it.

    with translating(_url(engine)), engine.connect() as conn:
        conn.execution_options(**{LOCK_OPTION: MIGRATE})
        with conn.begin():
            yield conn


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    from alembic import command

    with _migrating(engine) as conn:
        _check_known(current_revision(conn), engine)
        command.upgrade(alembic_config(connection=conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to `revision` ("base" removes every table)."""
    from alembic import command

    with _migrating(engine) as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def ensure_schema(db: Database, migrate: bool = True, create: bool = True) -> None:
    """Make sure the database is at this code's head: migrate it if older, refuse it if newer.

    With `create=False`, a database without stepledger's schema is `NoLog` and is left as it is.

    The common cases — the head already, or a database with no tables — are answered on the
    driver's connection without importing SQLAlchemy or Alembic (dbapi.py says why).
    """
    with translating(db.safe_url):
        revision = _revision(db)
        if revision == HEAD_REVISION:
            return
        if revision is None and not create:
            raise no_log(db.url)
        if revision is None and migrate and create_fresh(db):
            return
    engine = db.engine
    _check_known(revision, engine)
    if not migrate:
        raise StoreError(
            f"the database {_url(engine)} is at {revision}, not {HEAD_REVISION}: run `stepledger db upgrade`"
        )
    upgrade(engine)


_CATALOG = {
    # (is there a table called :name?, how many tables are there?) in the connection's schema
    "sqlite": (
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = :name",
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    ),
    "postgresql": (
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = :name",
        "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()",
    ),
}


def _revision(db: Database) -> str | None:
    has_table = _CATALOG[db.dialect][0]
    with db.transaction() as cursor:
        cursor.execute(db.sql(has_table), {"name": VERSION_TABLE})
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(f"SELECT version_num FROM {VERSION_TABLE}")
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def create_fresh(db: Database) -> bool:
    """Give a database without any table the head schema at once; False if it is not empty.

    Running every migration on a new database costs the Alembic import and one step per revision
    (most of a first `stepledger run`); creating the declared tables (ddl.py, rendered from
    schema.py) and views and stamping the head gives the same schema (tests/store/test_migrations.py
    compares the two) in one transaction, under the migration lock.
    """
    with db.transaction(Mode.MIGRATE) as cursor:
        cursor.execute(_CATALOG[db.dialect][1])
        if cursor.fetchone()[0]:
            return False  # not empty (someone else created it meanwhile, or foreign tables)
        for statement in (*TABLES[db.dialect], *view_statements(db.dialect)):
            cursor.execute(statement)
        cursor.execute(
            f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
            f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
        )
        cursor.execute(
            db.sql(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:head)"), {"head": HEAD_REVISION}
        )
    return True


def _check_known(revision: str | None, engine: Engine) -> None:
    if revision is None:
        return
    from alembic.util import CommandError

    try:
        known = script_directory().get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError is a CommandError
        known = False
    if not known:
        raise SchemaTooNew(
            f"the database {_url(engine)} has schema revision {revision!r}, newer than this "
            f"stepledger knows ({HEAD_REVISION}): upgrade stepledger"
        )


def history() -> list[tuple[str, str | None, str]]:
    """(revision, down revision, message) of every migration, newest first."""
    return [
        (s.revision, s.down_revision if isinstance(s.down_revision, str) else None, s.doc or "")
        for s in script_directory().walk_revisions()
    ]


def heads() -> list[str]:
    """The head revisions of the migration scripts (one, in a healthy history)."""
    return list(script_directory().get_heads())


def _url(engine: Engine) -> str:
    return safe_url(engine.url.render_as_string(hide_password=False))
