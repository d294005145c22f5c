"""Migrations on both dialects: one head, the migrated schema equals the declared tables,
downgrade-then-upgrade keeps the rows, a newer schema is refused, and rebuilt projections equal
the ones written append by append.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dbs
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.schema import CreateIndex

from stepledger.engine import audit
from stepledger.events import (
    RunDrainRequested,
    RunFinished,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepRetryRequested,
    StepStarted,
    StreamWrite,
)
from stepledger.events.state import fold
from stepledger.store import migrate
from stepledger.store.connect import engine_for, open_store
from stepledger.store.errors import SchemaTooNew
from stepledger.store.schema import HEAD_REVISION, PROJECTION_TABLES, metadata
from stepledger.store.sql import SqlEventStore
from stepledger.store.views import view_statements


def head() -> str:
    """The one head of the migration scripts."""
    (only,) = migrate.heads()
    return only


def test_one_head_and_the_code_knows_it() -> None:
    assert migrate.heads() == [HEAD_REVISION], "set store/schema.py HEAD_REVISION to the newest migration"
    revisions = [r for r, _, _ in migrate.history()]
    assert revisions[0] == HEAD_REVISION and len(revisions) == len(set(revisions))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_urls(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, str]]:
    """Two URLs of empty databases (no tables at all) of one dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    request.getfixturevalue("pg_template")  # fails with the reason when the server is missing
    names = [f"stepledger_empty_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        dbs._admin(f'CREATE DATABASE "{name}"')
    try:
        yield dbs.pg_admin_url(names[0]), dbs.pg_admin_url(names[1])
    finally:
        for name in names:
            dbs._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def expression_indexes_unreflected() -> Iterator[None]:
    """Silence SQLAlchemy and Alembic saying that SQLite's expression indexes (migration 0005, dropped
    by 0006) cannot be reflected or compared; `expression_indexes` reads those from the catalog."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*expression-based index ix_events_\w+_attempts")
        warnings.filterwarnings("ignore", r".*expression-based index 'ix_events_\w+_attempts'")
        yield


def special_indexes(conn: Any) -> dict[str, str]:
    """Name -> definition of every index on an expression or partial, as the database's catalog
    holds it (what reflection leaves out)."""
    if conn.dialect.name == "sqlite":
        sql = (
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND (sql LIKE '%(%(%' OR sql LIKE '%WHERE%')"
        )
    else:
        sql = (
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE indexdef LIKE '%(%(%' OR indexdef LIKE '%WHERE%'"
        )
    return {name: " ".join(definition.split()) for name, definition in conn.execute(text(sql))}


def test_the_migrated_schema_equals_the_declared_tables(empty_urls: tuple[str, str]) -> None:
    engine = engine_for(empty_urls[0])
    try:
        migrate.upgrade(engine)  # every migration, one after another
        with engine.connect() as conn, expression_indexes_unreflected():
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            found = special_indexes(conn)
        # Alembic compares neither a partial index's condition nor (on SQLite) indexes on expressions:
        # the one partial index is the declared one, and 0006 dropped the audit's expression indexes.
        assert set(found) == {"ix_events_type"}
        if engine.dialect.name == "sqlite":
            (declared,) = [i for i in metadata.tables["events"].indexes if i.name == "ix_events_type"]
            assert found["ix_events_type"] == " ".join(str(CreateIndex(declared).compile(engine)).split())
        else:
            assert found["ix_events_type"].count("<> 'step.") == 6
    finally:
        engine.dispose()


def schema_of(url: str) -> dict[str, Any]:
    """Tables (columns, keys, indexes), views (columns) and the stamped revision of a database."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn, expression_indexes_unreflected():
            inspector = inspect(conn)
            tables = {
                name: (
                    [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
                    inspector.get_pk_constraint(name)["constrained_columns"],
                    sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)),
                    sorted(
                        (i["name"], tuple(i["column_names"]), i["unique"])
                        for i in inspector.get_indexes(name)
                    ),
                )
                for name in inspector.get_table_names()
            }
            views = {
                name: [c["name"] for c in inspector.get_columns(name)] for name in inspector.get_view_names()
            }
            revision = migrate.current_revision(conn)
            indexes = special_indexes(conn)
        return {
            "tables": tables,
            "views": views,
            "view_sql": view_definitions(engine),
            "revision": revision,
            "special_indexes": indexes,
        }
    finally:
        engine.dispose()


def test_a_new_database_gets_exactly_what_the_migrations_make(empty_urls: tuple[str, str]) -> None:
    fresh, migrated = empty_urls
    open_store(fresh).close()  # a brand-new database: created at once and stamped
    engine = engine_for(migrated)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    expected = schema_of(migrated)
    assert set(expected["views"]) == {"attempts", "run_summaries", "operator_actions"}
    assert set(expected["special_indexes"]) == {"ix_events_type"}
    assert schema_of(fresh) == expected


def view_definitions(engine: Any) -> dict[str, str]:
    """Name -> definition of every view, as the database's catalog holds it."""
    if engine.dialect.name == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'view'"
    else:
        sql = "SELECT viewname, definition FROM pg_views WHERE schemaname = current_schema()"
    with engine.connect() as conn:
        return {name: definition for name, definition in conn.execute(text(sql))}


# The SQL store/views.py gives the views, as migration 0007 created them. A change to it needs a new
# migration (which creates the new form from views.py), and 0007 must then keep a copy of this form
# for itself and for the new migration's downgrade, as 0003 keeps the one from before 0007.
VIEWS_AT_0007 = {
    "sqlite": "ff2ce12a6da301db",
    "postgresql": "54e5e78e414b3bff",
}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_views_sql_is_what_the_newest_views_migration_made(dialect: str) -> None:
    digest = hashlib.sha256("\n".join(view_statements(dialect)).encode()).hexdigest()[:16]
    assert digest == VIEWS_AT_0007[dialect], (
        "store/views.py changed: add a migration that re-creates the changed views, freeze 0007's "
        "copy of the old SQL for its downgrade, then update VIEWS_AT_0007"
    )


def test_0007_downgrade_gives_back_the_views_of_0006(empty_urls: tuple[str, str]) -> None:
    at_0006, downgraded = engine_for(empty_urls[0]), engine_for(empty_urls[1])
    try:
        migrate.upgrade(at_0006, "0006")
        migrate.upgrade(downgraded)
        before = view_definitions(at_0006)
        assert set(before) == {"attempts", "run_summaries", "operator_actions"}
        assert view_definitions(downgraded) != before
        migrate.downgrade(downgraded, "0006")
        assert view_definitions(downgraded) == before
    finally:
        at_0006.dispose()
        downgraded.dispose()


def test_a_drain_recorded_at_0006_is_listed_once_the_database_is_upgraded(sql_url: str) -> None:
    """A log at 0006 holding a drain (run.drain_requested is older than 0007): opening it migrates
    it, and the drain is then an operator action and counted in its run's summary; nothing is lost."""
    store = open_store(sql_url)
    assert isinstance(store, SqlEventStore)
    try:
        fill(store, "r1")
        started = RunStarted(workstream_id="ws2", workstream={"id": "ws2"}, workstream_hash="h",
                             source_path="ws2.json", workdir=".")  # fmt: skip
        drain = RunDrainRequested(by="dora", reason="Ctrl-C")
        store.append([StreamWrite("r2", "r2", 0, [started, drain])])
        migrate.downgrade(store.engine, "0006")
        events = list(store.read_all())
        projections = projection_rows(store)
        with store.engine.connect() as conn:
            # At 0006 the views do not know drains (what 0007 mends).
            assert conn.execute(text("SELECT count(*) FROM operator_actions")).scalar() == 1
            columns = conn.execute(text("SELECT * FROM run_summaries")).keys()
            assert "drain_requests" not in columns
    finally:
        store.close()
    store = open_store(sql_url)  # the automatic upgrade of a database older than the code
    assert isinstance(store, SqlEventStore)
    try:
        assert migrate.database_revision(store.engine) == head() == "0007"
        assert list(store.read_all()) == events
        assert projection_rows(store) == projections
        rows = audit.actions(store)
        assert [(r["action"], r["actor"], r["run_id"], r["step_id"], r["reason"]) for r in rows] == [
            ("retry", "me", "r1", "a", ""), ("drain", "dora", "r2", None, "Ctrl-C")
        ]  # fmt: skip
        summaries = {r["run_id"]: r for r in audit.run_summaries(store)}
        assert (summaries["r1"]["drain_requests"], summaries["r2"]["drain_requests"]) == (0, 1)
        assert (summaries["r2"]["status"], summaries["r2"]["workstream_id"]) == ("running", "ws2")
    finally:
        store.close()


def fill(store: Any, run_id: str = "r1") -> None:
    """A run with retries, a pass, a failure and an operator's retry request."""
    started = RunStarted(
        workstream_id="ws", workstream={"id": "ws"}, workstream_hash="h", source_path="ws.json", workdir="."
    )
    store.append([StreamWrite(run_id, run_id, 0, [started])])
    s = f"{run_id}/"
    store.append(
        [
            StreamWrite(run_id, s + "a", 0, [StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1)]),
            StreamWrite(run_id, s + "b", 0, [StepReady()]),
        ]
    )
    failed = StepFailed(attempt=1, reason="timeout", started_at=1.0, finished_at=9.0, error_signature="x")
    store.append([StreamWrite(run_id, s + "a", 2, [failed, StepRetryRequested(by="me")])])
    store.append([StreamWrite(run_id, s + "a", 4, [StepStarted(attempt=2, host="h", pid=2, pgid=2)])])
    passed = StepPassed(attempt=2, started_at=10.0, finished_at=12.5, outputs={"n": 1})
    store.append([StreamWrite(run_id, s + "a", 5, [passed]), StreamWrite(run_id, s + "b", 1, [StepReady()])])
    store.append([StreamWrite(run_id, run_id, 1, [RunFinished(outcome="failed", passed=1, failed=1)])])


def projection_rows(store: SqlEventStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)).all()) for t in PROJECTION_TABLES}


def test_rebuilding_the_projections_gives_the_same_rows(sql_url: str) -> None:
    store = open_store(sql_url)
    assert isinstance(store, SqlEventStore)
    try:
        fill(store, "r1")
        fill(store, "r2")
        before = projection_rows(store)
        assert len(before["step_states"]) == 4 and len(before["runs"]) == 2
        assert store.rebuild_projections() == 2
        assert projection_rows(store) == before
        fill(store, "r3")  # appends after a rebuild (the cache was dropped) stay right
        assert store.run_state("r3") == fold("r3", store.read_run("r3"))
    finally:
        store.close()


def test_downgrade_then_upgrade_keeps_the_rows(sql_url: str) -> None:
    store = open_store(sql_url)
    assert isinstance(store, SqlEventStore)
    try:
        fill(store)
        events = list(store.read_all())
        projections = projection_rows(store)
        for revision, _, _ in migrate.history()[1:]:  # every revision below head, newest first
            migrate.downgrade(store.engine, revision)
            assert migrate.database_revision(store.engine) == revision
            assert list(store.read_all()) == events
            migrate.upgrade(store.engine)
            assert migrate.database_revision(store.engine) == head()
            assert list(store.read_all()) == events
            assert projection_rows(store) == projections
        migrate.downgrade(store.engine, "base")
        with store.engine.connect() as conn:
            assert not {"events", "runs", "step_states"} & set(conn.dialect.get_table_names(conn))
        migrate.upgrade(store.engine)
        assert migrate.database_revision(store.engine) == head()
    finally:
        store.close()


def test_a_schema_newer_than_the_code_is_refused(sql_url: str) -> None:
    open_store(sql_url).close()
    engine = engine_for(sql_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaTooNew, match=r"9999_from_the_future.*upgrade stepledger"):
        open_store(sql_url)


def _open_each_at_once(urls: list[str], barrier: Any) -> None:
    """Open each database of `urls` in turn, each time together with the other processes."""
    for url in urls:
        barrier.wait(timeout=60)
        open_store(url).close()


def test_processes_opening_a_new_database_at_once_migrate_it_once(sql_url: str, tmp_path: Path) -> None:
    if "postgresql" in sql_url:  # the fixture's database is already migrated: start from base
        engine = engine_for(sql_url)
        migrate.downgrade(engine, "base")
        engine.dispose()
        urls = [sql_url]
    else:  # new files are cheap: many races, each started by a barrier (one in eight failed once)
        urls = [f"sqlite:///{tmp_path / f'ledger{i}.db'}" for i in range(40)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    procs = [context.Process(target=_open_each_at_once, args=(urls, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    for url in urls:
        engine = engine_for(url)
        try:
            assert migrate.database_revision(engine) == head()
        finally:
            engine.dispose()
