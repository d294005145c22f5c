"""The pieces of a worker's riding out a database outage, one at a time (engine/fleet/ride_out.py,
engine/fleet/worker.py); tests/fleet/test_fleet_outage.py has whole outages on a private cluster."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from fleetkit import wait_for
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate import exceptions as pq_exceptions
from procrastinate.jobs import Status
from procrastinate.testing import InMemoryConnector
from procrastinate.worker import Worker as ProcrastinateWorker
from psycopg_pool.base import AttemptWithBackoff

from stepledger.engine.fleet import ledger, schema
from stepledger.engine.fleet.ride_out import (
    RECONNECT_EVERY,
    Heartbeat,
    check_internals,
    ride_out_outages,
    steady_reconnects,
)
from stepledger.engine.fleet.settings import conninfo
from stepledger.engine.fleet.worker import claim


def _lost() -> pq_exceptions.ConnectorException:
    error = pq_exceptions.ConnectorException()
    error.__cause__ = psycopg.OperationalError("server closed the connection unexpectedly")
    return error


def _worker() -> ProcrastinateWorker:
    return ProcrastinateWorker(App(connector=InMemoryConnector()), install_signal_handlers=False)


def test_this_procrastinate_has_what_ride_out_wraps() -> None:
    check_internals(_worker())  # raises, naming what is missing, after an upgrade that renamed it


def test_a_worker_s_pools_try_a_lost_connection_again_every_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # Restored after the test: the setting is the process's (a worker sets it once, at its start).
    for name in ("INITIAL_DELAY", "DELAY_BACKOFF"):
        monkeypatch.setattr(AttemptWithBackoff, name, getattr(AttemptWithBackoff, name))
    steady_reconnects()
    attempt, now, waits = AttemptWithBackoff(timeout=300), 0.0, []
    for _ in range(8):  # the pool's waits between tries through a long outage
        attempt.update_delay(now)
        waits.append(attempt.delay)
        now += attempt.delay
    assert all(0.8 * RECONNECT_EVERY <= wait <= 1.2 * RECONNECT_EVERY for wait in waits), waits
    assert now < 10  # eight tries within ten seconds (left alone, psycopg_pool's last is after 2 min)


def test_a_lost_connection_is_ridden_out_and_any_other_error_is_not() -> None:
    worker = _worker()
    manager = worker.app.job_manager
    calls = {"fetch": 0, "finish": 0}

    async def fetch_lost(*args: Any, **kwargs: Any) -> Any:
        calls["fetch"] += 1
        raise _lost()

    async def finish_lost_twice(*args: Any, **kwargs: Any) -> None:
        calls["finish"] += 1
        if calls["finish"] <= 2:
            raise _lost()

    manager.fetch_job = fetch_lost  # type: ignore[method-assign]
    manager.finish_job_by_id_async = finish_lost_twice  # type: ignore[method-assign]
    said: list[str] = []
    ride_out_outages(worker, said.append)

    async def go() -> None:
        assert await manager.fetch_job(queues=None, worker_id=1) is None  # no job: looked for again
        assert await manager.fetch_job(queues=None, worker_id=1) is None
        # tried until it ends
        await manager.finish_job_by_id_async(job_id=1, status=Status.SUCCEEDED, delete_job=True)
        await manager.update_heartbeat(1)  # Heartbeat's thread writes it: nothing here, no error

    asyncio.run(go())
    assert calls == {"fetch": 2, "finish": 3}
    assert said == [
        "cannot look for jobs yet: server closed the connection unexpectedly",  # once, not every try
        "cannot end a job yet: server closed the connection unexpectedly",
    ]

    async def refused(*args: Any, **kwargs: Any) -> Any:
        error = pq_exceptions.ConnectorException()
        error.__cause__ = psycopg.errors.ForeignKeyViolation("worker_id")
        raise error

    other = _worker()
    other.app.job_manager.fetch_job = refused  # type: ignore[method-assign]
    ride_out_outages(other, said.append)
    with pytest.raises(pq_exceptions.ConnectorException):
        asyncio.run(other.app.job_manager.fetch_job(queues=None, worker_id=1))


@pytest.mark.postgres
def test_a_claim_whose_answer_was_lost_is_found_this_workers_on_the_retry(pg_url: str) -> None:
    key = ("run-c", "x", 1)
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        assert claim(conn, key, "h1", "h1:10", 7)
        # The retry after a lost answer: the row is this worker's claim of this job.
        assert claim(conn, key, "h1", "h1:10", 7)
        # Anyone else's delivery of the attempt, or this worker's of another job, runs nothing.
        assert not claim(conn, key, "h2", "h2:20", 7)
        assert not claim(conn, key, "h1", "h1:10", 8)
        # Settled (recorded, or fenced): nothing runs again.
        assert ledger.record(conn, key, "h1:10", {"passed": True})
        assert not claim(conn, key, "h1", "h1:10", 7)


@pytest.mark.postgres
def test_the_heartbeat_says_when_the_database_is_back_and_when_the_worker_was_forgotten(pg_url: str) -> None:
    info = conninfo(pg_url)
    with psycopg.connect(info, autocommit=True) as conn:
        schema.install(conn)
        (worker_id,) = conn.execute("SELECT * FROM procrastinate_register_worker_v1()").fetchone() or (0,)
        conn.execute("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'")
    back, forgotten = threading.Event(), threading.Event()
    said: list[str] = []
    # A connection string that cannot connect first (a port nobody listens on), then the real one:
    # the heartbeat fails, then is written again and calls on_back.
    beat = Heartbeat("host=127.0.0.1 port=1 connect_timeout=1", 0.05, said.append,
                     lambda conn: back.set(), forgotten.set)  # fmt: skip
    beat.start(worker_id)
    try:
        wait_for(lambda: said, "the heartbeat to fail")
        assert said[0].startswith("cannot send heartbeats yet") and not back.is_set()
        beat.conninfo = info  # the database is back
        assert back.wait(30)
        with psycopg.connect(info, autocommit=True) as conn:
            row = conn.execute(
                "SELECT now() - last_heartbeat < interval '1 minute' FROM procrastinate_workers"
                " WHERE id = %s",
                (worker_id,),
            ).fetchone()
            assert row == (True,)
            conn.execute("DELETE FROM procrastinate_workers WHERE id = %s", (worker_id,))  # pruned
        assert forgotten.wait(30)
    finally:
        beat.stop()


def test_the_heartbeat_goes_on_when_its_database_back_call_fails(pg_url: str) -> None:
    # A worker whose heartbeat stopped while its attempts run is taken for dead: an error of the
    # worker's own reaction to the database's return must not end the heartbeat thread.
    info = conninfo(pg_url)
    with psycopg.connect(info, autocommit=True) as conn:
        schema.install(conn)
        (worker_id,) = conn.execute("SELECT * FROM procrastinate_register_worker_v1()").fetchone() or (0,)
    calls: list[int] = []

    def failing_back(conn: psycopg.Connection) -> None:
        calls.append(1)
        raise RuntimeError("a bug in the reaction")

    said: list[str] = []
    beat = Heartbeat("host=127.0.0.1 port=1 connect_timeout=1", 0.05, said.append, failing_back, lambda: None)
    beat.start(worker_id)
    try:
        wait_for(lambda: said, "the heartbeat to fail")
        beat.conninfo = info  # the database is back; on_back raises
        wait_for(lambda: calls, "on_back to be called")
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'")
            # Still beating: the heartbeat is written again after the failed call.
            stale = (
                "SELECT now() - last_heartbeat > interval '1 minute' FROM procrastinate_workers WHERE id = %s"
            )
            wait_for(lambda: conn.execute(stale, (worker_id,)).fetchone() == (False,), "another heartbeat")
        assert any("RuntimeError: a bug in the reaction" in line for line in said), said
    finally:
        beat.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("running_one", [False, True])
def test_a_job_taken_by_a_fetch_whose_answer_was_lost_is_handed_back(pg_url: str, running_one: bool) -> None:
    # A fetch commits (the job `doing`, this worker's) and the connection breaks before its answer
    # arrives. The worker, riding the outage out, keeps its heartbeat: the job would never be found
    # stalled, and its run would wait for it forever. The next fetch hands it back and takes it
    # again; a job the worker does run (in `_running_jobs`) is left alone.
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
    app = App(connector=PsycopgConnector(conninfo=conninfo(pg_url), min_size=1, max_size=2))
    worker = ProcrastinateWorker(app, install_signal_handlers=False)
    manager = app.job_manager
    real_fetch = manager.fetch_job
    answers_lost = [True]

    async def fetch_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        job = await real_fetch(*args, **kwargs)
        if answers_lost and answers_lost.pop():
            raise _lost()  # committed in the database; the answer never came
        return job

    manager.fetch_job = fetch_then_lose_the_answer  # type: ignore[method-assign]
    said: list[str] = []
    ride_out_outages(worker, said.append)

    async def go() -> None:
        await app.open_async()
        try:
            task = app.configure_task("noop", queue="q")
            worker_id = await manager.register_worker()
            worker.worker_id = worker_id
            held_id = await task.defer_async() if running_one else None
            if running_one:  # a job this worker received and runs: never handed back
                held = await real_fetch(queues=["q"], worker_id=worker_id)
                assert held is not None and held.id == held_id
                running = asyncio.ensure_future(asyncio.sleep(0))
                worker._running_jobs[running] = cast(JobContext, SimpleNamespace(job=held))
            lost_id = await task.defer_async()
            assert await manager.fetch_job(queues=["q"], worker_id=worker_id) is None
            async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
                taken = "SELECT status FROM procrastinate_jobs WHERE id = %s"
                status = await (await conn.execute(taken, (lost_id,))).fetchone()
            assert status == ("doing",)  # taken, by nobody who knows it
            again = await manager.fetch_job(queues=["q"], worker_id=worker_id)
            assert again is not None and again.id == lost_id
            assert said[-1] == "handed back 1 job(s) taken by a fetch whose answer was lost"
            async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
                rows = await (await conn.execute(
                    "SELECT id, status FROM procrastinate_jobs ORDER BY id")).fetchall()  # fmt: skip
            assert rows == [(job_id, "doing") for job_id in sorted(filter(None, (held_id, lost_id)))]
        finally:
            await app.close_async()

    asyncio.run(go())
