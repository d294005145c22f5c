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
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from stepledger.engine.api import error_types

from .runlist import RunList
from .views import look_of, run_row

if TYPE_CHECKING:
    from stepledger.engine.api import Stepledger

QUEUE_SIZE = 2000  # messages a page may fall behind before it is told to reconnect
KEEPALIVE_S = 15.0  # a comment line this often shows a dead connection (and keeps proxies open)
WAIT_S = 0.5  # how long one wait for new events lasts before the thread checks whether to stop
LOG_CHUNK = 1 << 16  # bytes of a log sent in one message
LOG_POLL_S = 0.25  # how often a followed log file is looked at
FLEET_LOOK_S = 1.0  # how often a watched run's steps on workers are asked whether they wait for one
RESET = {"kind": "reset"}
CLOSE = {"kind": "close"}


@dataclass(eq=False)
class Subscription:
    """One open page: what it watches, and its queue on the server's event loop."""

    loop: asyncio.AbstractEventLoop
    run_id: str | None = None  # a run page or a step page; None: the runs page
    statuses: frozenset[str] = frozenset()  # the runs page's filters: only rows it would show
    workstream: str | None = None
    follows_log: bool = False  # a step page: also told when a worker streamed a log of the run
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
    """A run's steps as a page shows them, by step id: `state` as the log has it, `shown` and
    `look` as a page shows it (a step waiting for a worker, views.look_of)."""
    return {
        s["step_id"]: {
            "step_id": s["step_id"], "state": s["state"], **look_of(s), "attempt": s["attempt"],
            "duration": s["duration"], "last_error": s["last_error"],
        }
        for s in status["steps"]
    }  # fmt: skip


def run_snapshot(api: Stepledger, run_id: str, since: int, hub: LiveHub) -> dict[str, Any]:
    """Everything a run page shows live: the run's status, every step, the events after `since`."""
    status = api.status(run_id)
    hub.saw(status)
    return {
        "kind": "run",
        "run_id": run_id,
        "status": status["status"],
        "shown_status": status["shown_status"],  # e.g. running (waiting for a worker to drive it)
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
        # Running runs somebody watches -> what their pages were last sent (or a page's snapshot
        # showed) of the steps a worker changes without an event: a worker taking a job, or starting
        # on a queue, appends none, so the hub asks the fleet about these runs every FLEET_LOOK_S.
        # Written by the hub's thread and by the request threads' snapshots: under _lock.
        self._waiting: dict[str, Shown] = {}
        self._on_workers: dict[str, bool] = {}  # watched run -> recorded --on-workers (hub's thread only)
        self._next_look = 0.0
        self._fleet = True  # False once the listener found the log is not in PostgreSQL: no fleet
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="stepledger-ui-live", daemon=True)
        self._thread.start()
        self._listener = threading.Thread(target=self._hear_fleet, name="stepledger-ui-fleet", daemon=True)
        self._listener.start()

    def saw(self, status: dict[str, Any]) -> None:
        """A page's snapshot of a run: what it shows waiting for a worker, until the hub sends more."""
        if status["status"] == "running":
            with self._lock:
                self._waiting.setdefault(status["run_id"], Shown.of(status))

    def close_streams(self) -> None:
        """End every page's stream (the server is stopping: it need not wait for browsers to leave)."""
        self._stop.set()
        for sub in self._subscribers():
            sub.loop.call_soon_threadsafe(sub.push, CLOSE)

    def stop(self) -> None:
        self.close_streams()
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(timeout=5)

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
                with contextlib.suppress(Exception):  # asked again at the next look; the log's news goes on
                    self._look_at_fleet(api)
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
        with self._lock:
            for run_id in set(self._waiting) - watched:
                del self._waiting[run_id]
        if listers:
            rows = [run_row(row) for row in listed]
            for sub in listers:
                wanted = [row for row in rows if sub.wants_row(row)]
                if wanted:
                    sub.loop.call_soon_threadsafe(sub.push, {"kind": "runs", "runs": wanted})

    def _run_update(
        self, api: Stepledger, run_id: str, before: int | None, summary: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The steps of `run_id` that changed since its pages were last sent them, and its events
        after `before` (None: none).

        `summary`: the run's summary when the run list already read it (None: read here)."""
        status = api.status(run_id)
        now = step_rows(status)
        sent = self._last_steps.get(run_id, {})
        self._last_steps[run_id] = now
        with self._lock:
            if status["status"] == "running":
                self._waiting[run_id] = Shown.of(status)
            else:
                self._waiting.pop(run_id, None)
        changed = [row for sid, row in now.items() if sent.get(sid) != row]
        return {
            "kind": "run",
            "run_id": run_id,
            "status": status["status"],
            "shown_status": status["shown_status"],
            "duration": run_row(summary or api.run_summary(run_id))["duration"],
            "steps": changed,
            "events": api.event_lines(run_id, since=before) if before is not None else [],
        }

    def _look_at_fleet(self, api: Stepledger) -> None:
        """Every FLEET_LOOK_S: for each running run on workers that somebody watches and that has a
        running step, whether the steps waiting for a worker are still those its pages show (a query
        or two a run; none on a SQLite log, which has no fleet); the pages of a run where they
        changed are sent its steps again."""
        if not self._fleet or time.monotonic() < self._next_look:
            return
        self._next_look = time.monotonic() + FLEET_LOOK_S
        subs = self._subscribers()
        watched = {s.run_id for s in subs if s.run_id is not None}
        for run_id in set(self._on_workers) - watched:
            del self._on_workers[run_id]
        for run_id in sorted(watched):
            with self._lock:
                shown = self._waiting.get(run_id)
            # Only a running step can wait for a worker (its job is enqueued with its step.started),
            # and only in a run on workers: for any other run nothing changes without an event.
            if shown is None or not shown.running or not self._is_on_workers(api, run_id):
                continue
            if shown.waiting_now(api.fleet_waiting(run_id)) == shown.waiting:
                continue
            message = self._run_update(api, run_id, None, None)
            for sub in subs:
                if sub.run_id == run_id:
                    sub.loop.call_soon_threadsafe(sub.push, message)

    def _is_on_workers(self, api: Stepledger, run_id: str) -> bool:
        """Whether the run was recorded --on-workers (or submitted): its run.started, read once."""
        known = self._on_workers.get(run_id)
        if known is None:
            started = list(api.events(run=run_id, types=["run.started"], must_exist=False))
            known = any(e.payload.get("options", {}).get("on_workers") for e in started)
            self._on_workers[run_id] = known
        return known

    def _hear_fleet(self) -> None:
        """Tell the step pages of a run when one of its attempts' logs grew or ended on a worker
        (the workers' notifications: one listening connection for the server), so a page that
        follows a log from the database reads it then, instead of asking the database on a timer."""
        news = None
        try:
            while not self._stop.is_set():
                try:
                    if news is None:
                        api = self._open_api()
                        try:
                            news = api.fleet_news()
                        finally:
                            api.close()
                        if news is None:  # the log is not in PostgreSQL: there is no fleet
                            self._fleet = False
                            return
                    runs = news.news(WAIT_S)
                except Exception:  # a database that went away: listen again after a while
                    if news is not None:
                        with contextlib.suppress(Exception):
                            news.close()
                        news = None
                    self._stop.wait(1.0)
                    continue
                if not runs:
                    continue
                for sub in self._subscribers():
                    if sub.follows_log and sub.run_id in runs:
                        sub.loop.call_soon_threadsafe(sub.push, {"kind": "fleet-log", "run_id": sub.run_id})
        finally:
            if news is not None:
                news.close()


@dataclass(frozen=True)
class Shown:
    """What a running run's pages show of the steps a worker changes without an event: the attempt
    of each step the log says runs, and which of those wait for a worker (`waiting_of`)."""

    running: dict[str, int]  # step id -> attempt
    waiting: dict[str, tuple[int, str, bool]]

    @staticmethod
    def of(status: dict[str, Any]) -> Shown:
        running = {s["step_id"]: s["attempt"] for s in status["steps"] if s["state"] == "running"}
        return Shown(running, waiting_of(status))

    def waiting_now(self, answer: dict[str, dict[str, Any]]) -> dict[str, tuple[int, str, bool]]:
        """What `status` would show waiting, given the fleet's `answer` (Stepledger.fleet_waiting),
        for these running steps. Status keeps a job only when the log says its step runs that very
        attempt (engine/read/status.py, show_waiting): the answer is kept the same way, or a job
        status leaves out would make it differ from `waiting` at every look."""
        return {
            sid: (w["attempt"], w["queue"], w["served"])
            for sid, w in answer.items()
            if self.running.get(sid) == w["attempt"]
        }


def waiting_of(status: dict[str, Any]) -> dict[str, tuple[int, str, bool]]:
    """Step id -> (attempt, queue, served) of the steps `status` shows waiting for a worker."""
    return {
        s["step_id"]: (s["attempt"], s["waiting"]["queue"], s["waiting"]["served"])
        for s in status["steps"]
        if s.get("waiting")
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


class AttemptLogs:
    """Where a step page reads the logs of its step's attempts: the file on this machine, or, when
    this machine has none (the attempt ran on a worker elsewhere), the copy its worker streams into
    the database. Called on the thread pool: both ask the database."""

    def __init__(self, api: Callable[[], Stepledger], run_id: str, step_id: str) -> None:
        self._api, self.run_id, self.step_id = api, run_id, step_id
        self._paths: dict[int, str | None] = {}

    def path(self, attempt: int) -> str | None:
        """The attempt's log file here (asked once it is known: until the attempt is recorded
        started, None, and asked again at the next look)."""
        if attempt < 1:
            return None
        if self._paths.get(attempt) is None:
            try:
                known = self._api().log_files(self.run_id, self.step_id)
            except error_types():
                known = []
            self._paths[attempt] = str(known[attempt - 1]) if attempt <= len(known) else None
        return self._paths[attempt]

    def from_database(self, attempt: int, offset: int) -> tuple[bytes, bytes, int] | None:
        """(the line saying what was dropped before it, or b"", the next bytes after `offset` of the
        database's copy, the offset after them), or None if it has nothing new."""
        part = self._api().fleet_log_part(self.run_id, self.step_id, attempt, offset, LOG_CHUNK)
        if part is None or not part.data:
            return None
        return part.text_before(offset), part.data, part.start + len(part.data)


async def follow_log(
    hub: LiveHub,
    sub: Subscription,
    step_id: str,
    attempt: int,
    offset: int,
    logs: AttemptLogs,
    first: dict[str, Any],
) -> AsyncIterator[str]:
    """A step's log as it grows, from `offset` of attempt `attempt`'s log; a new attempt (the hub
    says so) starts a new log. A file has no change notification to rely on: a short poll is it.
    A log that is only in the database (a worker's elsewhere) is read when the hub hears that a log
    of the run grew or ended, and at each keep-alive in case a notification was lost."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    idle = 0.0
    ask_database = True
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
                if message["kind"] == "fleet-log":
                    ask_database = True
                    continue
                for row in message.get("steps", []):
                    if row["step_id"] != step_id:
                        continue
                    if row["attempt"] > attempt:
                        attempt, offset = row["attempt"], 0
                        decoder = codecs.getincrementaldecoder("utf-8")("replace")
                    ask_database = True  # an attempt that ended has its log's end in the database
                    yield sse({"kind": "state", **row})
            gap, chunk, after = b"", b"", offset
            # A database query until the file is known: kept off the event loop, which serves every page.
            path = await run_in_threadpool(logs.path, attempt)
            size = _size(path) if path is not None else -1
            if size > offset:  # a stat per poll; opened only when it grew
                with contextlib.suppress(FileNotFoundError), open(str(path), "rb") as f:
                    f.seek(offset)
                    chunk = f.read(LOG_CHUNK)
                after = offset + len(chunk)
            elif size < 0 and path is not None and ask_database:  # not on this machine
                ask_database = False
                try:
                    got = await run_in_threadpool(logs.from_database, attempt, offset)
                except Exception:  # a database that went away: asked again at the next keep-alive
                    got = None
                if got is not None:
                    gap, chunk, after = got
                    ask_database = len(chunk) >= LOG_CHUNK  # more may be there already
            if chunk:
                if gap:  # what came before the gap is not continued by what follows it
                    decoder = codecs.getincrementaldecoder("utf-8")("replace")
                text = gap.decode() + decoder.decode(chunk)
                offset = after
                yield sse({"kind": "log", "attempt": attempt, "offset": offset, "text": text})
                idle = 0.0
                continue
            await asyncio.sleep(LOG_POLL_S)
            idle += LOG_POLL_S
            if idle >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                idle = 0.0
                ask_database = True
    finally:
        hub.unsubscribe(sub)
