"""The workers' Procrastinate pools check a connection they lend only when its server closed it
(engine/fleet/jobs.py `make_serving_app`): no round trip per job on a live connection, and a
connection whose backend is gone (a restart, pg_terminate_backend) is replaced, not lent."""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import Any

import psycopg
import pytest
from fleetkit import wait_for
from procrastinate import App, PsycopgConnector
from psycopg_pool import AsyncConnectionPool

from stepledger.engine.fleet import jobs
from stepledger.engine.fleet.settings import conninfo


def _closed_by_server(conn: psycopg.AsyncConnection[Any]) -> bool:
    return bool(select.select([conn.pgconn.socket], [], [], 0)[0])


def _terminate(info: str, pid: int) -> None:
    with psycopg.connect(info, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_live_connection_is_lent_without_a_round_trip(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    full_checks: list[object] = []

    async def counted(conn: psycopg.AsyncConnection[Any]) -> None:
        full_checks.append(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counted))

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo(pg_url), autocommit=True) as conn:
            await conn.execute("SELECT 1")
            await jobs.check_if_closed(conn)
            assert full_checks == []
            _terminate(conninfo(pg_url), conn.info.backend_pid)
            wait_for(lambda: _closed_by_server(conn), "the terminated backend's socket to be readable", 10)
            await jobs.check_if_closed(conn)
            assert full_checks == [conn]  # something to read: the full check decides

    asyncio.run(go())


def _pool(app: App) -> AsyncConnectionPool:
    """The pool of an opened serving app (make_serving_app's connector is Procrastinate's psycopg one)."""
    connector = app.connector
    assert isinstance(connector, PsycopgConnector)
    return connector.pool


def test_a_pool_replaces_a_connection_whose_backend_was_terminated(pg_url: str) -> None:
    app = jobs.make_serving_app(conninfo(pg_url), connections=1)

    async def go() -> None:
        async with app.open_async():
            pool = _pool(app)
            async with pool.connection() as conn:
                first = conn.info.backend_pid
            _terminate(conninfo(pg_url), first)
            idle = pool._pool  # the connections waiting to be lent
            wait_for(lambda: idle and _closed_by_server(idle[0]), "the pooled socket to close", 10)
            async with pool.connection() as conn:  # would fail "terminating connection" unchecked
                row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            assert row is not None and row[0] != first

    asyncio.run(go())


def test_a_pool_lends_autocommit_connections_and_still_listens(pg_url: str) -> None:
    """Each query of a Procrastinate worker is one statement: it runs without a BEGIN and a COMMIT
    around it; the LISTEN connection, opened from the same settings, still opens."""
    app = jobs.make_serving_app(conninfo(pg_url), connections=2)

    async def go() -> None:
        async with app.open_async():
            pool = _pool(app)
            async with pool.connection() as conn:
                assert conn.autocommit
                await conn.execute("SELECT 1")
                # Not in a transaction after a statement: no COMMIT will follow it.
                assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            heard = asyncio.Event()
            listening = asyncio.create_task(
                app.connector.listen_notify(on_notification=_noted(heard), channels=["stepledger_pool_test"])
            )
            try:
                for _ in range(100):  # until LISTEN is in place: notify again until it is heard
                    async with pool.connection() as conn:
                        await conn.execute("NOTIFY stepledger_pool_test")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(heard.wait(), 0.1)
                        break
                assert heard.is_set(), "Procrastinate's LISTEN connection did not open"
            finally:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    asyncio.run(go())


def _noted(heard: asyncio.Event) -> Any:
    async def on_notification(**_: Any) -> None:
        heard.set()

    return on_notification
