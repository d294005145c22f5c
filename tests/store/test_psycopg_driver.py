"""The PostgreSQL store's own connections: URLs given to libpq, many-row inserts, pipelined appends."""

from __future__ import annotations

import sys

import pytest

from stepledger.events import RunStarted, StepFailed, StepReady, StreamWrite
from stepledger.store import psycopg_driver
from stepledger.store.dbapi import Database, Mode
from stepledger.store.errors import DatabaseUnavailable


def test_a_psycopg_url_is_read_by_libpq_with_a_connect_timeout() -> None:
    params = psycopg_driver.conninfo("postgresql+psycopg://ann:p%40ss@db.example:6543/ledger?sslmode=require")
    assert params == {
        "user": "ann",
        "password": "p@ss",
        "host": "db.example",
        "port": "6543",
        "dbname": "ledger",
        "sslmode": "require",
        "connect_timeout": psycopg_driver.CONNECT_TIMEOUT_S,
    }
    set_here = psycopg_driver.conninfo("postgresql+psycopg://h/d?connect_timeout=1")
    assert set_here is not None and set_here["connect_timeout"] == "1"
    # A plain postgresql:// URL means psycopg too (SQLAlchemy before 2.1 would take psycopg2).
    assert psycopg_driver.conninfo("postgresql://u@h:5/d") == psycopg_driver.conninfo(
        "postgresql+psycopg://u@h:5/d"
    )
    assert psycopg_driver.conninfo("postgresql+psycopg2://h/d") is None  # another driver: SQLAlchemy's engine


def test_a_malformed_psycopg_url_is_one_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="invalid database URL"):
        Database("postgresql+psycopg://h/d?no_such_option=1")


def test_only_a_plain_one_row_insert_becomes_a_many_row_insert() -> None:
    query, parameters = psycopg_driver._many_rows(
        "INSERT INTO t (a, b) VALUES (%(a)s, %(b)s::jsonb) ON CONFLICT (a) DO NOTHING"
    ) or ("", ())
    assert query == (
        "INSERT INTO t (a, b) SELECT a, b FROM json_populate_recordset(NULL::t, %s::json) "
        "ON CONFLICT (a) DO NOTHING"
    )
    assert parameters == (("a", False), ("b", True))
    assert psycopg_driver._many_rows("UPDATE t SET a = %(a)s WHERE b = %(b)s") is None
    assert psycopg_driver._many_rows("INSERT INTO t (a, b) VALUES (%(b)s, %(a)s)") is None  # not in order


def test_many_rows_keep_every_value_exactly(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psycopg_driver, "ROWS_PER_INSERT", 2)  # three rows: two statements
    db = Database(pg_url)
    rows = [
        {
            "i": 2**62,
            "f": 0.1 + 0.2,
            "s": "quote ' \" back\\slash é 漢 \n",
            "b": True,
            "j": '{"k": [1, 2.5, null]}',
        },
        {"i": -1, "f": 1e-300, "s": "", "b": False, "j": "[]"},
        {"i": None, "f": None, "s": None, "b": None, "j": None},
    ]
    try:
        with db.transaction(Mode.WRITE) as cursor:
            cursor.execute("CREATE TABLE many (i BIGINT, f DOUBLE PRECISION, s TEXT, b BOOLEAN, j JSONB)")
            db.execute_many(
                cursor, db.sql("INSERT INTO many (i, f, s, b, j) VALUES (:i, :f, :s, :b, :j!j)"), rows
            )
        with db.transaction() as cursor:
            cursor.execute("SELECT i, f, s, b, j FROM many ORDER BY i NULLS LAST, f")
            found = cursor.fetchall()
        assert found == [
            (-1, 1e-300, "", False, []),
            (2**62, 0.1 + 0.2, "quote ' \" back\\slash é 漢 \n", True, {"k": [1, 2.5, None]}),
            (None, None, None, None, None),
        ]
    finally:
        db.close()


def test_a_postgresql_store_imports_no_sqlalchemy(pg_url: str) -> None:
    # A fresh interpreter: appending and reading through a psycopg URL never loads SQLAlchemy.
    import subprocess

    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    assert plain != pg_url
    for run_id, url in (("r1", pg_url), ("r2", plain)):  # a plain postgresql:// URL is psycopg's too
        code = (
            "import sys\n"
            "from stepledger.store.connect import open_store\n"
            "from stepledger.events import RunStarted, StreamWrite\n"
            f"store = open_store({url!r})\n"
            "e = RunStarted(workstream_id='w', workstream={}, workstream_hash='h', source_path='-',\n"
            "               workdir='.')\n"
            f"store.append([StreamWrite({run_id!r}, {run_id!r}, 0, [e])])\n"
            f"assert [x.type for x in store.read_run({run_id!r})] == ['run.started']\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]", url


def test_a_failed_pipelined_append_leaves_its_connection_usable(pg_url: str) -> None:
    from stepledger.store.connect import open_store
    from stepledger.store.errors import ConcurrencyError

    store = open_store(pg_url)
    started = RunStarted(workstream_id="w", workstream={}, workstream_hash="h", source_path="-", workdir=".")
    try:
        store.append([StreamWrite("r", "r", 0, [started])])
        store.append([StreamWrite("r", "r/s", 0, [StepReady()])])
        for _ in range(3):  # the same connection comes back from the pool each time
            with pytest.raises(ConcurrencyError):
                store.append([StreamWrite("r", "r/s", 0, [StepReady()])])
        failed = StepFailed(attempt=1, reason="exit_code", started_at=1.0, finished_at=2.0, exit_code=1)
        store.append([StreamWrite("r", "r/s", 1, [failed])])
        assert [e.type for e in store.read_stream("r/s")] == ["step.ready", "step.failed"]
        state = store.run_state("r")
        assert state is not None and state.steps["s"].version == 2
    finally:
        store.close()
