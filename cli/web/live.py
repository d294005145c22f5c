"""Live pages: one thread follows the log for the whole server and pushes what changed to every page.

However many pages are open, the database sees one waiter (`Stepledger.wait_for_events`) and, per
batch of new events, one status read per run that somebody watches: a page left open for an hour
costs what it cost in its first minute. Each page gets its updates as server-sent events from a
queue of its own; a page whose queue overflows (a browser that stopped reading) is told to
reconnect, and every (re)connection starts with a full snapshot, so nothing is missed between the
page's render and its stream.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import threading
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from .runlist import RunList
from .views import run_row

if TYPE_CHECKING:
    from stepledger.engine.api import Stepledger

QUEUE_SIZE = 2000  # messages a page may fall behind before it is told to reconnect
KEEPALIVE_S = 15.0  # a comment line this often shows a dead connection (and keeps proxies open)
WAIT_S = 0.5  # how long one wait for new events lasts before the thread checks whether to stop
LOG_CHUNK = 1 << 16  # bytes of a log sent in one message
LOG_POLL_S = 0.25  # how often a followed log file is looked at
RESET = {"kind": "reset"}
CLOSE = {"kind": "close"}


@dataclass(eq=False)
class Subscription:
    """One open page: what it watches, and its queue on the server's event loop."""

    loop: asyncio.AbstractEventLoop
    run_id: str | None = None  # a run page or a step page; None: the runs page
    statuses: frozenset[str] = frozenset()  # the runs page's filters: only rows it would show
    workstream: str | None = None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def wants_row(self, row: dict[str, Any]) -> bool:
        return (not self.statuses or row["status"] in self.statuses) and (
            self.workstream is None or row["workstream_id"] == self.workstream
        )

    def push(self, message: dict[str, Any]) -> None:
        """Called on the event loop's thread."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(RESET)


def step_rows(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run's steps as a page shows them, by step id."""
    return {
        s["step_id"]: {
            "step_id": s["step_id"], "state": s["state"], "attempt": s["attempt"],
            "duration": s["duration"], "last_error": s["last_error"],
        }
        for s in status["steps"]
    }  # fmt: skip


def run_snapshot(api: Stepledger, run_id: str, since: int) -> dict[str, Any]:
    """Everything a run page shows live: the run's status, every step, the events after `since`."""
    status = api.status(run_id)
    return {
        "kind": "run",
        "run_id": run_id,
        "status": status["status"],
        "duration": run_row(api.run_summary(run_id))["duration"],
        "steps": list(step_rows(status).values()),
        "events": api.event_lines(run_id, since=since, newest=200),
    }


class LiveHub:
    """The thread that follows the log, and the pages it feeds."""

    def __init__(self, open_api: Callable[[], Stepledger], run_list: RunList) -> None:
        self._open_api = open_api
        self.run_list = run_list
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_steps: dict[str, dict[str, dict[str, Any]]] = {}  # run -> what its pages were sent

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="stepledger-ui-live", daemon=True)
        self._thread.start()

    def close_streams(self) -> None:
        """End every page's stream (the server is stopping: it need not wait for browsers to leave)."""
        self._stop.set()
        for sub in self._subscribers():
            sub.loop.call_soon_threadsafe(sub.push, CLOSE)

    def stop(self) -> None:
        self.close_streams()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def subscribe(self, sub: Subscription) -> Subscription:
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _subscribers(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs)

    def _follow(self) -> None:
        api = self._open_api()
        try:
            last = self._head(api)
            while not self._stop.is_set():
                try:
                    if not api.wait_for_events(last, WAIT_S):
                        continue
                    batch = list(api.events(since=last, must_exist=False))
                except Exception:  # a database that went away: wait, and try again
                    self._stop.wait(1.0)
                    continue
                if batch:
                    try:
                        self._fan_out(api, last, {e.run_id for e in batch})
                    except Exception:  # one bad batch must not end every page's updates
                        traceback.print_exc()
                        self._last_steps.clear()  # the next batch sends whole states again
                        self.run_list.forget()
                    last = batch[-1].position
        finally:
            api.close()

    def _head(self, api: Stepledger) -> int:
        """The log's last position, once there is a log (a server may start before the first run)."""
        while not self._stop.is_set():
            try:
                return api.head()
            except Exception:
                api.close()
                self._stop.wait(WAIT_S)
        return 0

    def _fan_out(self, api: Stepledger, before: int, runs: set[str]) -> None:
        subs = self._subscribers()
        watched = {s.run_id for s in subs if s.run_id is not None}
        listers = [s for s in subs if s.run_id is None]
        # The run list's summaries are read once and also give the run pages their durations.
        listed = self.run_list.update(api, runs) if listers or self.run_list.loaded else []
        summaries = {row["run_id"]: row for row in listed}
        for run_id in sorted(runs & watched):
            message = self._run_update(api, run_id, before, summaries.get(run_id))
            for sub in subs:
                if sub.run_id == run_id:
                    sub.loop.call_soon_threadsafe(sub.push, message)
        for run_id in set(self._last_steps) - watched:
            del self._last_steps[run_id]  # nobody watches it any more
        if listers:
            rows = [run_row(row) for row in listed]
            for sub in listers:
                wanted = [row for row in rows if sub.wants_row(row)]
                if wanted:
                    sub.loop.call_soon_threadsafe(sub.push, {"kind": "runs", "runs": wanted})

    def _run_update(
        self, api: Stepledger, run_id: str, before: int, summary: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The steps of `run_id` that changed since its pages were last sent them, and its new events.

        `summary`: the run's summary when the run list already read it (None: read here)."""
        status = api.status(run_id)
        now = step_rows(status)
        sent = self._last_steps.get(run_id, {})
        self._last_steps[run_id] = now
        changed = [row for sid, row in now.items() if sent.get(sid) != row]
        return {
            "kind": "run",
            "run_id": run_id,
            "status": status["status"],
            "duration": run_row(summary or api.run_summary(run_id))["duration"],
            "steps": changed,
            "events": api.event_lines(run_id, since=before),
        }


def _size(path: str) -> int:
    """The file's size (-1 while it does not exist)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def sse(message: dict[str, Any]) -> str:
    """One server-sent event: a named event with its JSON on one data line."""
    return f"event: {message['kind']}\ndata: {json.dumps(message, default=str)}\n\n"


async def stream(hub: LiveHub, sub: Subscription, first: list[dict[str, Any]]) -> AsyncIterator[str]:
    """The page's stream: `first` (its snapshot), then what the hub pushes, until it goes away."""
    try:
        for message in first:
            yield sse(message)
        while True:
            try:
                message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if message is CLOSE:
                return
            yield sse(message)
            if message is RESET:
                return
    finally:
        hub.unsubscribe(sub)


async def follow_log(
    hub: LiveHub,
    sub: Subscription,
    step_id: str,
    attempt: int,
    offset: int,
    path_for: Callable[[int], str | None],
    first: dict[str, Any],
) -> AsyncIterator[str]:
    """A step's log as it grows, from `offset` of attempt `attempt`'s file; a new attempt (the hub
    says so) starts a new file. A file has no change notification to rely on: a short poll is it."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    idle = 0.0
    try:
        yield sse({"kind": "state", **first})
        while True:
            while not sub.queue.empty():
                message = sub.queue.get_nowait()
                if message is CLOSE:
                    return
                if message is RESET:
                    yield sse(RESET)
                    return
                for row in message.get("steps", []):
                    if row["step_id"] != step_id:
                        continue
                    if row["attempt"] > attempt:
                        attempt, offset = row["attempt"], 0
                        decoder = codecs.getincrementaldecoder("utf-8")("replace")
                    yield sse({"kind": "state", **row})
            chunk = b""
            # A database query until the file is known: kept off the event loop, which serves every page.
            path = await run_in_threadpool(path_for, attempt)
            if path is not None and _size(path) > offset:  # a stat per poll; opened only when it grew
                with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(LOG_CHUNK)
            if chunk:
                offset += len(chunk)
                yield sse(
                    {"kind": "log", "attempt": attempt, "offset": offset, "text": decoder.decode(chunk)}
                )
                idle = 0.0
                continue
            await asyncio.sleep(LOG_POLL_S)
            idle += LOG_POLL_S
            if idle >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                idle = 0.0
    finally:
        hub.unsubscribe(sub)
