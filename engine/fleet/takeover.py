"""Before a new driver takes over a run on the fleet: the verdicts of attempts its old driver left.

A driver that died (kill -9, machine gone) leaves steps the log says are running, whose attempts
are jobs on the fleet. The reactor settles such attempts by their result file in the run folder
(engine/run/orphans.py); this writes that file from the attempt ledger first, so the reactor
records what really happened instead of starting the attempt again:

- the attempt's outcome is in the ledger: it becomes the result file (work done while no driver
  was alive is kept, and the step does not run again);
- a live worker still runs it: wait for its outcome, then as above;
- its worker is dead, or no worker took the job yet (or the old driver died before enqueueing it):
  the ledger is fenced *interrupted* — a worker that takes the job later runs nothing — and that
  verdict becomes the result file.

A run whose cancel was asked while nobody drove it (a run driven by workers, between two drivers)
is not waited for: `stop_left_attempts` asks the workers to stop its attempts first, and their
*cancelled* outcomes become the result files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from stepledger.events import FailureReason
from stepledger.events.state import RunState

from ..execution import files
from ..execution.spec import AttemptResult
from ..paths import run_dir_of
from . import ledger, schema
from .dispatcher import fail_job, failed_result, stalled_jobs
from .settings import RESULTS_CHANNEL, check_seconds, conninfo

CANCEL_JOB = "SELECT procrastinate_cancel_job_v1(%s, %s, false)"  # (job id, abort a running one)


def await_running_attempts(db_url: str, run: RunState, note: Callable[[str], None]) -> None:
    """Wait until no attempt the log says is running still runs on a live worker.

    Called before the resume takes the run's lease, which it then holds only for a moment before
    its reactor renews it: a wait of any length here cannot let the lease run out under it. Writes
    nothing; `settle_left_attempts`, under the lease, does.
    """
    running = [(run.run_id, sid, s.attempt) for sid, s in sorted(run.steps.items()) if s.state == "running"]
    if not running:
        return
    said: set[tuple[str, str, int]] = set()
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        schema.install(conn)
        conn.execute(f"LISTEN {RESULTS_CHANNEL}")
        while True:
            rows = [(key, ledger.attempt(conn, key)) for key in running]
            claimed = [(key, row) for key, row in rows if row is not None and row.state == "claimed"]
            # The fleet's stalled jobs once per look, not once per attempt: a dead worker's
            # attempts are not waited for (settle_left_attempts fences them).
            stalled = stalled_jobs(conn) if claimed else set()
            alive = [(key, row) for key, row in claimed if row.job_id not in stalled]
            if not alive:
                return
            for key, row in alive:
                if key not in said:
                    note(
                        f"[{key[1]}] attempt {key[2]} still runs on {row.host} ({row.worker}): waiting for it"
                    )
                    said.add(key)
            running = [key for key, _ in alive]
            for _ in conn.notifies(timeout=check_seconds(), stop_after=1):
                pass


def stop_left_attempts(
    db_url: str, run: RunState, reason: FailureReason, note: Callable[[str], None]
) -> None:
    """Ask the workers to stop every attempt the log says is running (a cancel asked while nobody
    drove the run); `settle_left_attempts` then collects how each ended.

    An attempt no worker took is fenced with `reason` first (a worker that takes its job later runs
    nothing) and its job withdrawn; a running one is asked to abort, with `reason` left in the
    ledger for its worker to report, as a live driver's cancel does (dispatcher.py).
    """
    running = [(run.run_id, sid, s.attempt) for sid, s in sorted(run.steps.items()) if s.state == "running"]
    if not running:
        return
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        schema.install(conn)
        for key in running:
            row = ledger.attempt(conn, key)
            if row is None:
                ledger.fence(
                    conn, key, failed_result(key, reason, "withdrawn before a worker took it").to_dict()
                )
                _withdraw(conn, key)
            elif row.state == "claimed":
                note(f"[{key[1]}] attempt {key[2]} runs on {row.host} ({row.worker}): asking it to stop")
                ledger.ask_cancel(conn, key, reason)
                if row.job_id:
                    conn.execute(CANCEL_JOB, (row.job_id, True))


def settle_left_attempts(db_url: str, run: RunState, note: Callable[[str], None]) -> int:
    """Write the result file of every running attempt of `run` from the ledger; how many."""
    verdicts = left_verdicts(db_url, run, note)
    if not verdicts:
        return 0
    run_dir = run_dir_of(run.workdir, run.run_id)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sid, result in verdicts.items():
        path = files.result_path(str(run_dir), sid, result.attempt)
        if not Path(path).exists():
            files.write_atomic(path, result.to_json().encode())
    return len(verdicts)


def left_verdicts(db_url: str, run: RunState, note: Callable[[str], None]) -> dict[str, AttemptResult]:
    """How each attempt the log says is running ended, by step id, from the ledger: recorded,
    awaited from the live worker that runs it, or fenced *interrupted* if its worker is dead or
    none took it."""
    running = [(sid, s.attempt) for sid, s in sorted(run.steps.items()) if s.state == "running"]
    if not running:
        return {}
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        schema.install(conn)
        conn.execute(f"LISTEN {RESULTS_CHANNEL}")
        return {
            sid: AttemptResult.from_dict(_verdict(conn, (run.run_id, sid, attempt), note))
            for sid, attempt in running
        }


def _verdict(conn: psycopg.Connection, key: tuple[str, str, int], note: Callable[[str], None]) -> dict:
    """The attempt's outcome from the ledger: recorded, awaited from a live worker, or fenced."""
    said = False
    while True:
        row = ledger.attempt(conn, key)
        if row is not None and row.state == "done" and row.result is not None:
            return row.result
        if row is None or row.job_id in stalled_jobs(conn):
            lost = failed_result(key, "interrupted", "its driver died before a worker reported it")
            ledger.fence(conn, key, lost.to_dict())
            if row is None:
                # Its job, if it waits still, would run nothing now: withdrawn, not left waiting
                # in its queue for a worker to take it for nothing.
                _withdraw(conn, key)
            elif row.job_id:
                fail_job(conn, row.job_id)  # its worker is dead: free the step's lock for the retry
            continue  # read back what won: the fence, or an outcome recorded just before it
        if not said:
            note(f"[{key[1]}] attempt {key[2]} still runs on {row.host} ({row.worker}): waiting for it")
            said = True
        deadline = time.monotonic() + check_seconds()
        for _ in conn.notifies(timeout=max(0.0, deadline - time.monotonic()), stop_after=1):
            pass


def _withdraw(conn: psycopg.Connection, key: tuple[str, str, int]) -> None:
    """Cancel the attempt's job if no worker took it yet (the fence already says what became of
    the attempt)."""
    waiting = conn.execute(
        "SELECT id FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo'",
        ("/".join(map(str, key)),),  # jobs.queueing_lock: the attempt's identity
    ).fetchall()
    for (job_id,) in waiting:
        conn.execute(CANCEL_JOB, (job_id, False))
