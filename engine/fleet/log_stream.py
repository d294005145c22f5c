"""An attempt's log streamed into the database while it is written: its output readable, and
followable, from any machine (`stepledger logs RUN STEP --follow`).

The worker's local pool writes each attempt's output to its log file (engine/execution/attempt.py),
as on one machine. A `LogStreamer` thread of the worker looks at the log of each attempt the worker
runs every STREAM_INTERVAL seconds and, when it grew, appends what was added as chunks to
`stepledger_fleet_log` (schema.py) and notifies LOG_CHANNEL. When the attempt ends, its job copies
the rest in the transaction that records the outcome (`settle`): a reader that sees the attempt
settled has every chunk.

Only the last `log_cap_bytes()` of an attempt's output are kept: an append deletes (or cuts) the
oldest chunks beyond the cap in its own transaction. A chunk's `start` is where it begins in the
whole output, so a reader says how much was dropped before (or between) the chunks it reads. The
worker is the only writer of its attempt's chunks (it claimed the attempt), so it keeps their sizes
in memory instead of reading them back.

A run's driver streams its orchestrator.log the same way, one part per driver (`RunLogStream`, at
the end of this file).

The chunks are the step's own output, exactly as its local log file has it: stepledger does not
redact a step's output on one machine either (what a step prints is the step's business,
docs/workstreams.md), so whoever can read the database can read what the step printed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from ..execution import attempt as local_attempt
from .settings import LOG_CHANNEL

STREAM_INTERVAL = 0.5  # seconds between looks at the running attempts' log files
READ_CHUNK = 256 << 10  # the largest chunk written: a big burst of output becomes several
# The line engine/execution/attempt.py leaves where it cut the middle out of a long log.
_CUT_MARK = re.compile(rb"\n\[stepledger: ([\d,]+) bytes of output cut here; [^\n]*\]\n")

Key = tuple[str, str, int]
T = TypeVar("T")
# A chunk written again from the same place (its first write's answer was lost with the
# connection) holds at least what was written the first time: it replaces it.
_INSERT = (
    "INSERT INTO stepledger_fleet_log (run_id, step_id, attempt, seq, start, data)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, step_id, attempt, seq)"
    " DO UPDATE SET start = EXCLUDED.start, data = EXCLUDED.data"
)


@dataclass(frozen=True)
class _Growth:
    """What one copy of a log's growth writes (`rows`, the chunks to `drop` up to, the chunk to
    `cut`), and the streaming's state once that is committed."""

    rows: list[tuple[str, str, int, int, int, bytes]]
    drop: int | None
    cut: tuple[int, int] | None
    kept: deque[tuple[int, int, int]]
    seq: int
    offset: int
    written: int

    @property
    def single(self) -> bool:
        """One chunk to insert, nothing to delete or cut: one statement writes it."""
        return len(self.rows) == 1 and self.drop is None and self.cut is None


class AttemptLog:
    """The streaming of one attempt's log: how far its file was copied, and the chunks kept."""

    def __init__(self, key: Key, path: str, cap: int, offset: int = 0) -> None:
        self.key = key
        self.path = path
        self.cap = cap
        self.offset = offset  # bytes of the local file copied (or skipped)
        self.written = 0  # bytes of the output accounted for: kept, dropped, and our own notes
        self.seq = 0
        self.kept: deque[tuple[int, int, int]] = deque()  # (seq, start, length), oldest first
        self.lock = threading.Lock()  # the streamer's thread and the job's `settle` take turns
        self.closed = False

    def copy(self, conn: psycopg.Connection) -> bool:
        """Append what the log file gained since the last copy, and wake the followers; whether
        anything was appended."""
        grown = self.read()
        if grown is None:
            return False
        with conn.transaction():
            self.write(conn, grown)
            conn.execute("SELECT pg_notify(%s, %s)", (LOG_CHANNEL, self.key[0]))
        self.done(grown)
        return True

    def read(self) -> _Growth | None:
        """What the log file gained since the last copy, and what writing it changes; None: nothing.

        Nothing changes in memory until `done`, called once the write committed: after a database
        error the same bytes are copied again next time, and each statement is written so that
        repeating a transaction that did commit (its answer lost with the connection) changes
        nothing.
        """
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return None  # the attempt has not opened its log yet
        if size == self.offset:
            return None
        offset, written = self.offset, self.written
        pieces: list[tuple[int, bytes]] = []  # (start in the output, bytes)
        if size < offset:  # the attempt's end cut the middle out of a long log file
            offset, written, note = self._after_cut(size)
            if note:
                pieces.append((written, note))
                written += len(note)
        if size - offset > self.cap:  # more than is kept arrived at once: its beginning is dropped
            written += size - offset - self.cap
            offset = size - self.cap
        try:
            with open(self.path, "rb") as f:
                f.seek(offset)
                while offset < size:
                    data = f.read(min(READ_CHUNK, size - offset))
                    if not data:
                        break
                    pieces.append((written, data))
                    offset += len(data)
                    written += len(data)
        except FileNotFoundError:
            return None  # its run folder was removed meanwhile
        if not pieces:
            return None
        kept, seq, drop, cut = self._plan(pieces)
        rows = [(*self.key, self.seq + n, start, data) for n, (start, data) in enumerate(pieces, 1)]
        return _Growth(rows, drop, cut, kept, seq, offset, written)

    def write(self, conn: psycopg.Connection, grown: _Growth) -> None:
        """Write `grown` (in the caller's transaction: its statements go together)."""
        if len(grown.rows) == 1:
            conn.execute(_INSERT, grown.rows[0])
        else:
            with conn.cursor() as cur:
                cur.executemany(_INSERT, grown.rows)
        if grown.drop is not None:
            conn.execute(
                "DELETE FROM stepledger_fleet_log"  # seq 0 is a run log's header (RunLogStream)
                " WHERE run_id = %s AND step_id = %s AND attempt = %s AND seq BETWEEN 1 AND %s",
                (*self.key, grown.drop),
            )
        if grown.cut is not None:  # the chunk's front off, up to where the kept end begins
            seq, start = grown.cut
            conn.execute(
                "UPDATE stepledger_fleet_log SET data = substring(data FROM (%(from)s - start)::int + 1),"
                " start = %(from)s WHERE run_id = %(run)s AND step_id = %(step)s AND attempt = %(n)s"
                " AND seq = %(seq)s AND start < %(from)s",
                {"from": start, "run": self.key[0], "step": self.key[1], "n": self.key[2], "seq": seq},
            )

    def done(self, grown: _Growth) -> None:
        """`grown` is committed: the next copy goes on after it."""
        self.kept, self.seq, self.offset, self.written = grown.kept, grown.seq, grown.offset, grown.written

    def _plan(
        self, pieces: list[tuple[int, bytes]]
    ) -> tuple[deque[tuple[int, int, int]], int, int | None, tuple[int, int] | None]:
        """The chunks kept after appending `pieces`; the new last seq; the last seq to delete
        (None: none); the chunk to cut at its front and the output position it is to start at
        (None: none)."""
        kept = deque(self.kept)
        seq = self.seq
        for start, data in pieces:
            seq += 1
            kept.append((seq, start, len(data)))
        excess = sum(length for _, _, length in kept) - self.cap
        drop: int | None = None
        while excess > 0 and kept and kept[0][2] <= excess:
            drop, _, length = kept.popleft()
            excess -= length
        cut: tuple[int, int] | None = None
        if excess > 0 and kept:
            first, start, length = kept.popleft()
            kept.appendleft((first, start + excess, length - excess))
            cut = (first, start + excess)
        return kept, seq, drop, cut

    def _after_cut(self, size: int) -> tuple[int, int, bytes]:
        """Where copying goes on in a log file whose middle was cut (STEPLEDGER_MAX_LOG_BYTES): the
        file offset, the output position, and a note to add if part of what was not copied yet is
        gone. The cut kept the file's first `half` bytes, then its line, then its last `half`."""
        half = local_attempt.log_cap() // 2
        with open(self.path, "rb") as f:
            f.seek(max(0, half - 1))
            around = f.read(400)
        found = _CUT_MARK.match(around, 1 if half else 0)
        if found is None:  # not the cut we know: go on from the file's end
            note = b"\n[stepledger: the worker's log file was rewritten; what it holds now is not copied]\n"
            return size, self.written, note
        removed = int(found.group(1).replace(b",", b""))
        mark = len(found.group(0))  # the line, its newlines included, from offset `half` on
        tail_from = removed + half  # in the file as it was, where the kept end began
        if self.offset >= tail_from:  # everything not copied yet is in the kept end
            return self.offset - removed + mark, self.written, b""
        lost = tail_from - self.offset
        said = f"\n[stepledger: {lost:,} bytes of output cut here on the worker (STEPLEDGER_MAX_LOG_BYTES)]\n"
        return half + mark, self.written, said.encode()


class LogStreamer:
    """The worker's thread that streams the logs of its running attempts into the database."""

    def __init__(
        self, conninfo: str, cap: int, say: Callable[[str], None], interval: float = STREAM_INTERVAL
    ) -> None:
        self.conninfo = conninfo
        self.cap = cap
        self.say = say
        self.interval = interval
        self._logs: dict[Key, AttemptLog] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepledger-fleet-logs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def watch(self, key: Key, path: str, offset: int = 0) -> None:
        """Stream the log at `path` of the attempt `key`, from its byte `offset` on, until `settle`."""
        if self.cap > 0:  # STEPLEDGER_FLEET_LOG_BYTES=0: no log in the database
            with self._lock:
                self._logs[key] = AttemptLog(key, path, self.cap, offset)

    def settle(
        self,
        conn: psycopg.Connection,
        key: Key,
        record: Callable[[psycopg.Connection], T],
        record_along: Callable[[psycopg.Connection, tuple[str, Sequence[Any]]], T] | None = None,
    ) -> T:
        """Copy the rest of the attempt's log and `record(conn)` its outcome in one transaction
        (one commit on the attempt's way to its outcome, whose notification wakes the followers),
        then stop streaming the log. A database error leaves both undone, for the caller to try
        again; the log's end refused for another reason, the outcome is recorded all the same.

        `record_along(conn, statement)`: the outcome's statement with `statement` (the log's end,
        one chunk) made part of it, used on `conn` in autocommit when the end is one chunk and
        nothing is dropped: one round trip instead of a pipelined BEGIN, insert, record, COMMIT —
        the usual end of a short attempt, which every attempt of a busy fleet pays."""
        with self._lock:
            log = self._logs.get(key)
        if log is None:
            return record(conn)
        with log.lock:
            grown: _Growth | None = None
            if not log.closed:
                try:
                    grown = log.read()
                except OSError as error:
                    self.say(f"cannot stream the end of {key[1]}.{key[2]}'s log: {error}")
            try:
                if grown is not None and record_along is not None and conn.autocommit and grown.single:
                    recorded = record_along(conn, (_INSERT, grown.rows[0]))
                else:
                    # Pipelined: BEGIN, the log's end and the outcome go out together (the
                    # outcome's answer is the one awaited), then COMMIT — two round trips, not four.
                    with conn.pipeline(), conn.transaction():
                        if grown is not None:
                            log.write(conn, grown)
                        recorded = record(conn)
            except psycopg.OperationalError:
                raise  # the database is away: the caller tries again
            except psycopg.Error as error:
                if grown is None:
                    raise  # the outcome's own error, not the log's
                # The outcome matters more than the log's end: tried again without it (an error
                # of the outcome's own statement comes back, alone, and is raised).
                self.say(f"cannot stream the end of {key[1]}.{key[2]}'s log: {error}")
                grown = None
                recorded = record(conn)
            if grown is not None:
                log.done(grown)
            log.closed = True
        with self._lock:
            self._logs.pop(key, None)
        return recorded

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        failing = False
        while not self._stop.wait(self.interval):
            with self._lock:
                logs = list(self._logs.values())
            if not logs:
                continue
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                for log in logs:
                    with log.lock:
                        if not log.closed:
                            log.copy(conn)
                failing = False
            except (psycopg.Error, OSError) as error:
                # Tried again at the next look; the attempt's end copies the rest patiently.
                if not failing:
                    self.say(f"cannot stream attempts' logs to the database yet: {error}")
                failing = True
                if conn is not None and isinstance(error, psycopg.OperationalError):
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()


RUN_LOG_STEP = ""  # a run's orchestrator.log is kept under this step id, which no step has


class RunLogStream:
    """The orchestrator.log of the run this process drives, streamed into the database as it is
    written, so that `stepledger logs RUN` reads it on any machine.

    Each driver of the run writes a generation of its own, keyed (run_id, RUN_LOG_STEP, generation),
    numbered in the order the drivers took the run: two never drive it at once (the run's lease),
    so a reader shows the generations one after the other. Its chunks are an attempt log's
    (AttemptLog: `start` offsets, only the last `cap` bytes kept); row `seq` 0 is the generation's
    header: `start` is where it begins in the driver's file, `data` a JSON object {host, file,
    closed}. A driver whose file holds an earlier driver's lines (the same work directory drove the
    run before) streams from where that driver's copy ended. `close` copies the rest once the file
    is closed and marks the generation closed: a follower of an ended run stops once it has read it.

    The lines are what the driver says (events in words, notes), never a step's environment: the
    same lines as the file on the driver's machine.
    """

    def __init__(self, conninfo: str, run_id: str, path: str, host: str, cap: int) -> None:
        self.run_id = run_id
        self.path = os.path.realpath(path)  # as an earlier driver in the same folder named it
        self.host = host
        self.cap = cap
        self.key: Key | None = None
        self._conninfo = conninfo
        # Errors are not said: the driver's own lines say when the database is away, and the
        # copy is a convenience; the file on this machine stays whole.
        self._streamer = LogStreamer(conninfo, cap, lambda line: None)
        self._lock = threading.Lock()
        self._closed = False

    def begin(self, conn: psycopg.Connection) -> None:
        """Take the run's next generation and start copying the file into it."""
        if self.cap <= 0:  # STEPLEDGER_FLEET_LOG_BYTES=0: no log in the database
            return
        self.key, offset = _new_generation(conn, self.run_id, self.path, self.host)
        self._streamer.watch(self.key, self.path, offset)
        self._streamer.start()

    def close(self) -> None:
        """The driver wrote its last line: copy the rest, mark the generation closed and wake the
        followers (one transaction), stop copying. Idempotent."""
        with self._lock:
            if self._closed or self.key is None:
                return
            self._closed = True
        key = self.key
        try:
            with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                self._streamer.settle(conn, key, lambda c: _mark_closed(c, key, self.path, self.host))
        except (psycopg.Error, OSError):
            # The database is away (or the file): what was copied stays, and a follower stops once
            # the run's lease is free. The copy never stands in the way of the run's end.
            pass
        finally:
            self._streamer.stop()


def _header(host: str, path: str, closed: bool) -> bytes:
    return json.dumps({"host": host, "file": path, "closed": closed}).encode()


def _new_generation(conn: psycopg.Connection, run_id: str, path: str, host: str) -> tuple[Key, int]:
    """The key of the run's next generation (its header written), and the offset in `path` to copy
    from: the end of an earlier generation copied from the same file, else its beginning."""
    rows = conn.execute(
        "SELECT h.attempt, h.start, h.data, (SELECT max(c.start + length(c.data))"
        " FROM stepledger_fleet_log c WHERE c.run_id = h.run_id AND c.step_id = h.step_id"
        " AND c.attempt = h.attempt AND c.seq > 0)"
        " FROM stepledger_fleet_log h WHERE h.run_id = %s AND h.step_id = %s AND h.seq = 0",
        (run_id, RUN_LOG_STEP),
    ).fetchall()
    offset, last = 0, 0
    for generation, start, data, end in rows:
        last = max(last, generation)
        head = json.loads(bytes(data))
        if head.get("host") == host and head.get("file") == path:
            offset = max(offset, start + (end or 0))
    try:
        if offset > os.stat(path).st_size:
            offset = 0  # the file was made anew (its run folder removed): all of it is ours
    except FileNotFoundError:
        offset = 0
    while True:  # the lease makes a race for a number unlikely, not impossible (a driver that lost it)
        last += 1
        taken = conn.execute(
            "INSERT INTO stepledger_fleet_log (run_id, step_id, attempt, seq, start, data)"
            " VALUES (%s, %s, %s, 0, %s, %s) ON CONFLICT DO NOTHING RETURNING attempt",
            (run_id, RUN_LOG_STEP, last, offset, _header(host, path, False)),
        ).fetchone()
        if taken:
            return (run_id, RUN_LOG_STEP, last), offset


def _mark_closed(conn: psycopg.Connection, key: Key, path: str, host: str) -> None:
    conn.execute(
        "UPDATE stepledger_fleet_log SET data = %s"
        " WHERE run_id = %s AND step_id = %s AND attempt = %s AND seq = 0",
        (_header(host, path, True), *key),
    )
    conn.execute("SELECT pg_notify(%s, %s)", (LOG_CHANNEL, key[0]))
