"""A worker wakes for a job that was enqueued while it was looking for one.

Procrastinate's worker waits on an event that its notification listener sets when a job is
inserted, and clears that event after every fetch, whether or not the fetch found a job. A job
inserted (and notified) while a fetch was under way that did not see it (committed after the
fetch's snapshot) is then forgotten: it waits for the next notification or for the polling
interval, seconds later. With attempts arriving one by one as others end, that happens often:
in `benchmarks/bench_fleet.py` traces a job waited a few hundred milliseconds that way every few
rounds.

`wake_after_missed_notifications` watches for that: a notification that arrives while a fetch is
under way, followed by a fetch that found nothing, sets the event again right after the worker
cleared it, so the worker fetches once more. It relies on two of Procrastinate's internals
(`Worker._handle_notification`, `Worker._new_job_event`); `check_internals` fails loudly if an
upgrade renames them (tests/fleet/test_fleet_wakeups.py runs it), instead of the fix going quietly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from procrastinate.worker import Worker as ProcrastinateWorker


def check_internals(worker: ProcrastinateWorker) -> None:
    """Raise if this Procrastinate lacks what the fix wraps."""
    for name in ("_handle_notification", "_new_job_event"):
        if not hasattr(worker, name):
            raise RuntimeError(f"procrastinate.worker.Worker has no {name}: see engine/fleet/wakeups.py")


def wake_after_missed_notifications(worker: ProcrastinateWorker) -> None:
    """Install the fix on `worker` (whose app's job manager serves this worker alone)."""
    check_internals(worker)
    manager = worker.app.job_manager
    fetch_job = manager.fetch_job
    handle = worker._handle_notification
    fetching = 0  # fetches under way (the loop runs one at a time; counted to be safe)
    missed = False  # a job was notified while a fetch was under way

    async def noted_notification(*, channel: str, notification: Any) -> None:
        nonlocal missed
        if fetching and notification.get("type") == "job_inserted":
            missed = True
        await handle(channel=channel, notification=notification)

    async def fetch_noting_misses(*args: Any, **kwargs: Any) -> Any:
        nonlocal fetching, missed
        if not fetching:
            missed = False
        fetching += 1
        try:
            job = await fetch_job(*args, **kwargs)
        finally:
            fetching -= 1
        if job is None and missed and not fetching:
            missed = False
            # The worker clears the event as soon as this returns, before it next waits: set it
            # again on the loop's next turn, which comes after that clear.
            asyncio.get_running_loop().call_soon(worker._new_job_event.set)
        return job

    worker._handle_notification = noted_notification  # type: ignore[method-assign]
    manager.fetch_job = fetch_noting_misses  # type: ignore[method-assign]
