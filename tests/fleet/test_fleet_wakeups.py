"""A job notified while the worker's fetch was under way is fetched at once (engine/fleet/wakeups.py).

Procrastinate's own worker loop runs here, on its in-memory connector; the race is made certain by
a fetch that finds nothing and, before it returns, sees a job inserted and notified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from procrastinate import App
from procrastinate.jobs import Job
from procrastinate.testing import InMemoryConnector
from procrastinate.worker import Worker as ProcrastinateWorker

from stepledger.engine.fleet.wakeups import check_internals, wake_after_missed_notifications

POLLING = 30.0  # the worker's polling interval: far longer than any wait below


async def _run(fix: bool, wait: float) -> bool:
    """Whether the job inserted during the first fetch ran within `wait` seconds."""
    connector = InMemoryConnector()
    app = App(connector=connector)
    ran = asyncio.Event()

    @app.task(name="t", queue="q")
    def t() -> None:
        ran.set()

    async with app.open_async():
        worker = ProcrastinateWorker(
            app, queues=["q"], concurrency=1, fetch_job_polling_interval=POLLING,
            install_signal_handlers=False,
        )  # fmt: skip
        manager = app.job_manager
        fetch_job = manager.fetch_job
        raced = False

        async def fetch_then_insert(queues: Iterable[str] | None, worker_id: int) -> Job | None:
            nonlocal raced
            job = await fetch_job(queues=queues, worker_id=worker_id)
            if not raced and job is None:
                raced = True
                while not connector.notify_channels:  # the listener is listening
                    await asyncio.sleep(0)
                await t.defer_async()  # inserted and notified after the fetch looked
            return job

        manager.fetch_job = fetch_then_insert  # type: ignore[method-assign]
        if fix:
            wake_after_missed_notifications(worker)
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(ran.wait(), wait)
            done = True
        except TimeoutError:
            done = False
        worker.stop()
        await running
        assert raced
        return done


def test_a_job_notified_during_a_fetch_that_missed_it_is_fetched_at_once() -> None:
    assert asyncio.run(_run(fix=True, wait=10.0))


def test_without_the_fix_procrastinate_waits_for_its_polling_interval() -> None:
    # The race the fix is for. Should a Procrastinate release fix it, this fails: the fix can go.
    assert not asyncio.run(_run(fix=False, wait=1.0))


def test_the_internals_the_fix_wraps_are_there() -> None:
    worker = ProcrastinateWorker(App(connector=InMemoryConnector()), install_signal_handlers=False)
    check_internals(worker)
