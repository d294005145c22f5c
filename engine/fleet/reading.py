"""Reading the fleet for front ends: where each attempt of a run ran, which still wait for a worker
(and whether a live worker serves their queue), attempts' logs as their workers stream them, and a
run's orchestrator.log as its drivers stream it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from stepledger.store.errors import DatabaseUnavailable

from . import ledger, roster, schema
from .log_stream import RUN_LOG_STEP
from .settings import LOG_CHANNEL, RESULTS_CHANNEL, conninfo

ATTEMPTS, LOG, WORKERS = "stepledger_fleet_attempts", "stepledger_fleet_log", "stepledger_fleet_workers"


def fleet_attempts(db_url: str, run_id: str) -> list[dict[str, Any]]:
    """The run's attempts on the fleet, as plain rows: run or settled ones from the attempt ledger,
    then those still queued for a worker (state `queued`, with `served`: whether a live worker
    serves their queue); none if the run never used a fleet."""
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        if not schema.has_table(conn, ATTEMPTS):
            return []
        rows = [
            {
                "step_id": row.step_id,
                "attempt": row.attempt,
                "state": row.state,
                "queue": None,
                "host": row.host,
                "worker": row.worker,
                "passed": bool(row.result and row.result.get("passed")) if row.state == "done" else None,
                "reason": (row.result or {}).get("reason"),
            }
            for row in ledger.attempts_of(conn, run_id)
        ]
        known = {(row["step_id"], row["attempt"]) for row in rows}
        waiting = _queued(conn, run_id)
    for (step_id, attempt), (queue, served) in waiting.items():
        if (step_id, attempt) not in known:  # a job whose attempt was fenced waits only to be dropped
            rows.append({"step_id": step_id, "attempt": attempt, "state": "queued", "queue": queue,
                         "served": served, "host": "", "worker": "", "passed": None,
                         "reason": None})  # fmt: skip
    return rows


class FleetReader:
    """A front end's connection for its repeated looks at the fleet (`status`, which the web view
    asks on every change of a run): opened on first use, kept, and opened again after the database
    went away, instead of a new connection (a new server process) per look."""

    def __init__(self, db_url: str) -> None:
        self._conninfo = conninfo(db_url)
        self._conn: psycopg.Connection | None = None

    def waiting_attempts(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Step id -> {attempt, queue, served} of the run's attempts whose job waits for a worker."""
        try:
            return _waiting(self._connection(), run_id)
        except psycopg.OperationalError as error:
            raise self._lost(error) from None

    def log_part(self, key: tuple[str, str, int], position: int | None, limit: int) -> LogPart | None:
        """Up to about `limit` bytes of an attempt's log as the database keeps it: from `position`
        in the whole log (as far as the database still has it), or, with None, its last `limit`
        bytes; None while the database has nothing of it."""
        try:
            return _log_part(self._connection(), key, position, limit)
        except psycopg.OperationalError as error:
            raise self._lost(error) from None

    def _lost(self, error: psycopg.OperationalError) -> DatabaseUnavailable:
        """The database went away (or refused the connection): one line for the front end; the next
        look connects anew."""
        self.close()
        # libpq's message names the server, never a password.
        return DatabaseUnavailable(f"cannot read the fleet's tables: {' '.join(str(error).split())}")

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True)
class LogPart:
    """A stretch of an attempt's log from the database: `data` starts at `start` in the whole log;
    the database keeps the log from `kept_from` on (the cap dropped what came before); `end` is
    where its copy ends now."""

    kept_from: int
    start: int
    data: bytes
    end: int

    def text_before(self, position: int) -> bytes:
        """The line a reader that had the log up to `position` shows before `data` ("" if it
        misses nothing)."""
        return dropped_line(position, self.start - position) if self.start > position else b""


def _wait_for_run(conn: psycopg.Connection, run_id: str, timeout: float) -> None:
    """Until a notification on `conn` names `run_id`, or `timeout`. Every worker and driver notifies
    on the same channels, with the run id as payload: the news of other runs wakes nobody here."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for news in conn.notifies(timeout=left, stop_after=1):
            if news.payload == run_id:
                return


def _log_part(
    conn: psycopg.Connection, key: tuple[str, str, int], position: int | None, limit: int
) -> LogPart | None:
    if not schema.has_table(conn, LOG):
        return None
    where = "run_id = %s AND step_id = %s AND attempt = %s AND seq > 0"  # seq 0: a run log's header
    kept_from, end = conn.execute(
        f"SELECT min(start), max(start + length(data)) FROM stepledger_fleet_log WHERE {where}", key
    ).fetchone() or (None, None)
    if kept_from is None:
        return None
    since = max(0, end - limit) if position is None else position
    # The chunks after `since`, in order, until they hold `limit` bytes: chunks are as large as a
    # burst of output (up to log_stream.READ_CHUNK) or as small as a line, so no count of rows fits.
    rows = conn.execute(
        "SELECT start, data FROM (SELECT seq, start, data,"
        " sum(length(data)) OVER (ORDER BY seq) - length(data) AS before"
        f" FROM stepledger_fleet_log WHERE {where} AND start + length(data) > %s) AS later"
        " WHERE before < %s ORDER BY seq",
        (*key, since, limit),
    ).fetchall()
    if not rows:
        return LogPart(kept_from, since, b"", end)
    start = max(since, rows[0][0])
    pieces, at = [bytes(rows[0][1])[start - rows[0][0] :]], rows[0][0] + len(rows[0][1])
    for chunk_start, data in rows[1:]:
        if chunk_start != at:  # a stretch dropped between them: the next read begins with its line
            break
        pieces.append(bytes(data))
        at += len(data)
    return LogPart(kept_from, start, b"".join(pieces)[:limit], end)


def dropped_line(position: int, dropped: int, keeper: str = "the worker's machine") -> bytes:
    """The line a reader of the database's copy shows where `dropped` bytes that followed
    `position` of the log are not there (the cap of STEPLEDGER_FLEET_LOG_BYTES dropped them)."""
    if position == 0:
        return (
            f"[stepledger: the first {dropped:,} bytes of this log are not kept in the database"
            f" (STEPLEDGER_FLEET_LOG_BYTES): they stay on {keeper}]\n"
        ).encode()
    return (
        f"\n[stepledger: {dropped:,} bytes of this log are not shown here: they were dropped from the"
        " database (STEPLEDGER_FLEET_LOG_BYTES) before this reader got them]\n"
    ).encode()


def _waiting(conn: psycopg.Connection, run_id: str) -> dict[str, dict[str, Any]]:
    if not schema.has_table(conn, ATTEMPTS):
        return {}
    waiting = _queued(conn, run_id)
    if not waiting:
        return {}
    taken = {(r.step_id, r.attempt) for r in ledger.attempts_of(conn, run_id)}
    return {
        step_id: {"attempt": attempt, "queue": queue, "served": served}
        for (step_id, attempt), (queue, served) in waiting.items()
        if (step_id, attempt) not in taken
    }


def _queued(conn: psycopg.Connection, run_id: str) -> dict[tuple[str, int], tuple[str, bool]]:
    """(step, attempt) -> (queue, served) of the run's jobs no worker has taken yet."""
    jobs = conn.execute(
        "SELECT args->'spec'->>'step_id', (args->'spec'->>'attempt')::int, queue_name"
        " FROM procrastinate_jobs WHERE status = 'todo' AND args->'spec'->>'run_id' = %s ORDER BY id",
        (run_id,),
    ).fetchall()
    if not jobs:
        return {}
    served = roster.served_queues(conn) if schema.has_table(conn, WORKERS) else set()
    return {(step_id, attempt): (queue, queue in served) for step_id, attempt, queue in jobs}


def fleet_log(db_url: str, run_id: str, step_id: str, attempt: int | None) -> tuple[int, bytes] | None:
    """(attempt, its log as the database keeps it) of a step of a run on workers: the given attempt
    or the latest one with a log; None if there is none."""
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        if not schema.has_table(conn, ATTEMPTS):
            return None
        numbers = [
            row[0]
            for row in conn.execute(
                "SELECT attempt FROM stepledger_fleet_attempts WHERE run_id = %s AND step_id = %s"
                " AND (%s::int IS NULL OR attempt = %s) ORDER BY attempt DESC",
                (run_id, step_id, attempt, attempt),
            ).fetchall()
        ]
        for number in numbers:
            log = FleetLog(conn, (run_id, step_id, number))
            data = b"".join(log.chunks())
            if log.seen:
                return number, data
            legacy = ledger.legacy_log(conn, (run_id, step_id, number))
            if legacy is not None:
                return number, legacy
    return None


class FleetLog:
    """One attempt's log as its worker streams it into the database (log_stream.py), read as it
    grows: each `chunks()` gives what was added since the last, with a line where bytes were
    dropped (the beginning of a log longer than the cap, or a stretch a slow reader missed)."""

    def __init__(
        self, conn: psycopg.Connection, key: tuple[str, str, int], keeper: str = "the worker's machine"
    ) -> None:
        self.conn = conn
        self.key = key
        self.keeper = keeper  # where the whole log is, as the line for a dropped beginning says
        self.name = f"{key[1]}.{key[2]}.log"
        self._seq = 0
        self._position = 0  # where the next byte to show is in the attempt's whole output
        self.seen = False  # whether any chunk was read

    def chunks(self) -> Iterator[bytes]:
        if not self.seen and not schema.has_table(self.conn, LOG):
            return
        rows = self.conn.execute(
            "SELECT seq, start, data FROM stepledger_fleet_log"
            " WHERE run_id = %s AND step_id = %s AND attempt = %s AND seq > %s ORDER BY seq",
            (*self.key, self._seq),
        ).fetchall()
        for seq, start, data in rows:
            if start > self._position:
                yield dropped_line(self._position, start - self._position, self.keeper)
            self.seen = True
            self._seq, self._position = seq, start + len(data)
            yield bytes(data)

    def wait(self, timeout: float) -> None:
        """Until a worker says a log of this run grew or an attempt of it ended (the caller reads),
        or `timeout` (FleetLogs listens on the connection)."""
        _wait_for_run(self.conn, self.key[0], timeout)

    def ended(self) -> str | None:
        """None while the attempt may still add to its log; else how it ended, in words."""
        row = ledger.attempt(self.conn, self.key)
        if row is None or row.state != "done" or row.result is None:
            return None
        where = f" on {row.host}" if row.host else " before a worker took it"
        how = "passed" if row.result.get("passed") else f"failed ({row.result.get('reason')})"
        return f"{self.key[1]} attempt {self.key[2]} ended{where}: {how}"


class FleetRunLog:
    """A run's orchestrator.log as its drivers stream it (log_stream.RunLogStream): each driver's
    part (a generation) in the order they drove the run, read as it grows. A line before each part
    names the machine it comes from. It ends once the run has ended and its last driver's part is
    complete (closed, or its driver gone: the run's lease is free)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        run_id: str,
        run_over: Callable[[], str | None],
        driven: Callable[[], bool],
    ) -> None:
        self.conn = conn
        self.run_id = run_id
        self.name = "orchestrator.log"
        self._run_over = run_over
        self._driven = driven
        self._part: FleetLog | None = None  # the generation being read
        self._shown: set[int] = set()  # generations whose first line was shown

    def parts(self) -> list[tuple[int, dict[str, Any]]]:
        """(generation, header) of each driver's part so far, in order."""
        if not schema.has_table(self.conn, LOG):
            return []
        rows = self.conn.execute(
            "SELECT attempt, data FROM stepledger_fleet_log WHERE run_id = %s AND step_id = %s"
            " AND seq = 0 ORDER BY attempt",
            (self.run_id, RUN_LOG_STEP),
        ).fetchall()
        return [(generation, json.loads(bytes(data))) for generation, data in rows]

    def chunks(self) -> Iterator[bytes]:
        for generation, head in self.parts():
            if self._part is not None and generation < self._part.key[2]:
                continue  # read already (what its driver added since, after it lost the run, is not)
            if self._part is None or generation > self._part.key[2]:
                key = (self.run_id, RUN_LOG_STEP, generation)
                self._part = FleetLog(self.conn, key, "its driver's machine")
            for n, chunk in enumerate(self._part.chunks()):
                if n == 0 and generation not in self._shown:
                    self._shown.add(generation)
                    yield part_line(generation, head)
                yield chunk

    def wait(self, timeout: float) -> None:
        """Until a driver (or a worker) says a log of this run grew, or `timeout`."""
        _wait_for_run(self.conn, self.run_id, timeout)

    def ended(self) -> str | None:
        shown = self._run_over()
        if shown is None:
            return None
        if shown.startswith("running"):  # its orchestrator is gone and the fleet does not take it over
            return f"run {self.run_id} is {shown}"
        parts = self.parts()
        if parts and not parts[-1][1].get("closed") and self._driven():
            return None  # its driver writes its last lines yet
        return ""


def part_line(generation: int, head: dict[str, Any]) -> bytes:
    """The line before a driver's part of a run's orchestrator.log read from the database."""
    return f"[stepledger: the run's driver {generation}, on {head.get('host') or '?'}]\n".encode()


class FleetLogs:
    """The connection that a command's FleetLogs share, listening for their workers' news."""

    def __init__(self, db_url: str) -> None:
        self.conn = psycopg.connect(conninfo(db_url), autocommit=True)
        self.conn.execute(f"LISTEN {LOG_CHANNEL}")
        # An outcome ends a follow: its notification wakes the wait too.
        self.conn.execute(f"LISTEN {RESULTS_CHANNEL}")

    def log(self, key: tuple[str, str, int]) -> FleetLog:
        return FleetLog(self.conn, key)

    def run_log(
        self, run_id: str, run_over: Callable[[], str | None], driven: Callable[[], bool]
    ) -> FleetRunLog | None:
        """The run's orchestrator.log as its drivers stream it; None if the database has none."""
        log = FleetRunLog(self.conn, run_id, run_over, driven)
        return log if log.parts() else None

    def news(self, timeout: float) -> set[str]:
        """The runs whose attempts' logs grew or ended, as the first notifications within `timeout`
        name them (none if nothing came)."""
        runs = {n.payload for n in self.conn.notifies(timeout=timeout, stop_after=1)}
        runs.update(n.payload for n in self.conn.notifies(timeout=0))  # and whatever came with it
        return runs

    def close(self) -> None:
        self.conn.close()
