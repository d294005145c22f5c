"""Database fixtures: a SQLite file per test, a fresh PostgreSQL database per test, and `store`
parametrised over the three adapters (memory, SQLite, PostgreSQL).

PostgreSQL databases are copied from a template database migrated once per session (CREATE
DATABASE ... TEMPLATE is a file copy: far faster than migrating each one). Names carry a random
session tag, so test sessions running at the same time on one server never collide. When the
server is unreachable the test FAILS with the reason — it never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from stepledger.store.connect import open_store
from stepledger.store.port import EventStore

PG_SERVER = os.environ.get("STEPLEDGER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
_TAG = uuid.uuid4().hex[:8]


def pg_admin_url(database: str) -> str:
    """The test server's URL, pointing at `database`."""
    return make_url(PG_SERVER).set(database=database).render_as_string(hide_password=False)


def _admin(sql: str) -> None:
    # CREATE/DROP DATABASE cannot run in a transaction block: autocommit.
    engine = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """The name of a migrated template database for this test session."""
    name = f"stepledger_tpl_{_TAG}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except Exception as error:  # the server is part of the test environment: fail, never skip
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER} ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]}); start it (scripts/test does) or set STEPLEDGER_TEST_PG",
            pytrace=False,
        )
    store = open_store(pg_admin_url(name))
    store.close()
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, migrated PostgreSQL database, dropped after the test."""
    name = f"stepledger_t_{_TAG}_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield pg_admin_url(name)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL of a SQLite file in the test's temporary folder (migrated on first open)."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


ADAPTERS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=ADAPTERS)
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store of each adapter ("memory://" for the in-memory one)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=ADAPTERS[1:])
def sql_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh SQL store of each dialect: SQLite and PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url".replace("postgres_", "pg_")))


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    """A fresh, empty event store of each adapter: memory, SQLite and PostgreSQL."""
    opened = open_store(store_url)
    yield opened
    opened.close()
