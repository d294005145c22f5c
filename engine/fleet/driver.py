"""The driver process of a run driven by workers: `python -m stepledger.engine.fleet.driver RUN`.

A worker's drive job (drive.py) starts it in the worker's work directory, after taking the run's
lease; the lease's token comes in STEPLEDGER_DRIVE_OWNER and the database in STEPLEDGER_DB. It
drives the run as `resume` does on the fleet, under that lease:

- attempts the log says are running are waited for while a live worker still runs them, or
  fenced *interrupted* when their worker is dead (takeover.py) — never started a second time;
  a run whose cancel was asked while nobody drove it asks those attempts to stop instead;
- the run's folder is this worker's (`<workdir>/.stepledger/runs/RUN`: orchestrator.log, result
  files), not the folder of the machine that submitted it (or ran `run --on-workers`), which this
  machine may not have. Everything else comes from the log: the recorded workstream with its
  parameters, `max_workers` (run.started options), each step's queue; a step's `${env.NAME}`
  values are not resolved here but by the worker that runs each attempt (attempt_env.py);
- it is a takeover (resume_run(takeover=True)): a run that ended meanwhile is left as it is, a
  cancel asked while nobody drove it stands, and so does a drain (a first Ctrl-C) the run's last
  driver had begun: the attempts it left are awaited as above, nothing new starts, and the run
  ends interrupted.

It asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG): a worker killed with
SIGKILL takes its drives with it, as a dead machine would, and no driver outlives its worker to
overlap the one that takes the run over.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import sys
from collections.abc import Callable

import psycopg
from procrastinate.exceptions import ConnectorException

from stepledger.events.state import RunState
from stepledger.store.errors import StoreError

from ..errors import RunInUse, StepledgerError
from ..session.leases import LeaseLost, RunLease
from ..session.runs import load_run, resume_run
from .dispatcher import FleetDispatcher, run_log_of
from .drive import OWNER_ENV, PARENT_ENV, WORKER_ENV
from .takeover import await_running_attempts, settle_left_attempts, stop_left_attempts
from .workstream import recorded_step_queues

PR_SET_PDEATHSIG = 1
EXIT_DRIVEN_ELSEWHERE = 3


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGKILL this process when its parent goes; False if it has gone already."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return os.getppid() == parent  # the parent died before the call: nobody would kill us


def here(run: RunState, workdir: str) -> RunState:
    """The run with its folder in this worker's work directory."""
    return dataclasses.replace(run, workdir=workdir)


def drive(db_url: str, run_id: str, owner: str, workdir: str, say: Callable[[str], None]) -> str:
    """Drive `run_id` to its end (or until it is stopped) under the lease `owner`; its outcome."""
    from stepledger.store.connect import open_store

    store = open_store(db_url, workdir=workdir, create=False)
    try:
        if load_run(store, run_id).status != "running":
            return "not driven: it has ended"
        lease = RunLease(store, run_id, owner=owner)
        if not lease.acquire():
            raise RunInUse(f"run {run_id} is driven by another worker now")
        run = here(load_run(store, run_id), workdir)
        if run.status != "running":
            return "not driven: it has ended"
        # The drive job renews the lease while this waits, however long the attempts take.
        if run.cancel_requested:
            stop_left_attempts(db_url, run, "cancelled", say)
        else:
            await_running_attempts(db_url, run, say)
        queues = recorded_step_queues(run.workstream)
        made: list[FleetDispatcher] = []

        def pool(size: int, results: object) -> FleetDispatcher:
            # Under the lease, after run.resumed: the verdicts of the attempts the last driver left
            # become their result files before the reactor looks for them. A cancel asked since
            # the look above stands too (session/runs.py asks it again): those attempts are
            # stopped, not waited for, and the reactor ends the run cancelled.
            left = here(load_run(store, run_id), workdir)
            if left.cancel_requested:
                stop_left_attempts(db_url, left, "cancelled", say)
            settle_left_attempts(db_url, left, say)
            made.append(FleetDispatcher(db_url, size, results, queues, run_log_of(workdir, run_id)))  # type: ignore[arg-type]
            return made[-1]

        try:
            result = resume_run(
                store, run_id, pool_factory=pool, run=here(load_run(store, run_id), workdir), owner=owner,
                takeover=True,
            )  # fmt: skip
        except StepledgerError as error:
            if not isinstance(error, LeaseLost):
                # The resume gave the lease back on its way out. Taken again (unless another driver
                # has it), it runs out a lease from now: a run this worker cannot drive (its
                # work directory refused: a step's cwd, the runs folder) is tried again then, not at
                # the fleet's next look.
                with contextlib.suppress(StepledgerError, StoreError):
                    lease.acquire()
            raise
        finally:
            for dispatcher in made:  # the run's log has its last line: the rest of its copy
                dispatcher.close_run_log()
        return result.outcome
    finally:
        store.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or OWNER_ENV not in os.environ:
        print("stepledger: the driver of a run is started by `stepledger worker`", file=sys.stderr)
        return 2
    run_id = argv[1]
    worker = os.environ.get(WORKER_ENV, "?")

    def say(line: str) -> None:
        print(f"stepledger worker {worker}: run {run_id}: {line}", file=sys.stderr, flush=True)

    if not die_with_parent(int(os.environ.get(PARENT_ENV, "0"))):
        return 1
    # A cancel on this host wakes the run's driver with SIGUSR1, whose default is to die: until the
    # session's handlers are in place (once the reactor runs) it is ignored; the lease's heartbeat
    # sees the cancel in the log anyway.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        outcome = drive(os.environ["STEPLEDGER_DB"], run_id, os.environ[OWNER_ENV], os.getcwd(), say)
    except RunInUse as error:
        say(str(error))
        return EXIT_DRIVEN_ELSEWHERE
    except (StepledgerError, StoreError) as error:  # a lost lease, the database gone for too long
        say(str(error).splitlines()[0] if str(error) else type(error).__name__)
        return 1
    except (psycopg.Error, ConnectorException) as error:
        # The fleet's own connections (an enqueue, a cancel) failed while the database was away:
        # this driver stops as a crash would; its lease runs out and a worker takes the run over.
        said = str(error).strip().splitlines()
        say(f"stopped driving: the database went away ({said[0] if said else type(error).__name__})")
        return 1
    say(f"ended: {outcome}" if not outcome.startswith("not driven") else outcome)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter tear-down: the listener threads need none, the log is committed
