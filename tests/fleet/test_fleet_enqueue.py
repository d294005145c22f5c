"""An attempt's job is enqueued in the transaction that records its step.started (docs/workers.md).

So a job exists if and only if its attempt's start is in the log: a batch that loses an append race
takes its jobs with it, and a driver killed right after the commit leaves the job for the workers
instead of an attempt that must be fenced and started again.
"""

from __future__ import annotations

import json
import queue
import subprocess
from pathlib import Path

import pytest
from fleetkit import STEPLEDGER, Fleet, cli, driver_env, query, workstream

from stepledger.engine.execution.spec import AttemptResult, AttemptSpec
from stepledger.engine.fleet.dispatcher import FleetDispatcher
from stepledger.events import StreamWrite, step_stream
from stepledger.events.types import StepStarted
from stepledger.store.connect import open_store
from stepledger.store.errors import ConcurrencyError

pytestmark = pytest.mark.postgres


def _jobs(db: str, lock: str) -> list[tuple[int, str]]:
    return [
        (int(i), str(s))
        for i, s in query(db, "SELECT id, status FROM procrastinate_jobs WHERE queueing_lock = %s", lock)
    ]


def test_the_job_commits_with_the_start_or_not_at_all(fleet: Fleet, tmp_path: Path) -> None:
    store = open_store(fleet.db)
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    dispatcher = FleetDispatcher(fleet.db, 2, results)
    dispatcher.start()  # no worker runs: the job stays waiting, for the test to look at
    try:
        spec = AttemptSpec("run-q", "x", 1, "shell", ("true",), (), str(tmp_path), {}, None,
                           run_dir=str(tmp_path / ".stepledger/runs/run-q"))  # fmt: skip
        slot = dispatcher.idle_worker()
        assert slot is not None
        started = StepStarted(attempt=1, host="h", pid=slot.pid, pgid=0)
        stream = step_stream("run-q", "x")

        # Another writer was first (the stream is not at version 3): nothing is recorded, no job.
        along = dispatcher.enqueue_along([(slot, spec)], lambda s: s)
        with pytest.raises(ConcurrencyError):
            store.append([StreamWrite("run-q", stream, 3, [started])], along)
        assert _jobs(fleet.db, "run-q/x/1") == []

        along = dispatcher.enqueue_along([(slot, spec)], lambda s: s)
        store.append([StreamWrite("run-q", stream, 0, [started])], along)
        [(job_id, status)] = _jobs(fleet.db, "run-q/x/1")
        assert status == "todo"
        dispatcher.submit(slot, spec)  # watches that job; enqueues no second one
        assert _jobs(fleet.db, "run-q/x/1") == [(job_id, "todo")]
        assert dispatcher._inflight[("run-q", "x", 1)] == (slot.pid, job_id)
    finally:
        dispatcher.shutdown(kill_running=True)
        store.close()


@pytest.mark.parametrize("nth", [1, 2])
def test_a_driver_killed_right_after_the_commit_leaves_the_job_to_run_once(
    fleet: Fleet, tmp_path: Path, nth: int
) -> None:
    # Killed between the commit of step.started and `submit`: before jobs were enqueued with the
    # start, no job existed, and the next driver had to fence attempt 1 and start attempt 2.
    fleet.start("m1", "--drive", "0")  # no takeover by the fleet: the `resume` below drives
    side = tmp_path / "side.log"
    steps = [
        {"id": f"s{i}", "tasks": [f'echo "$STEPLEDGER_STEP_ID $STEPLEDGER_ATTEMPT" >> {side}']}
        for i in range(3)
    ]
    drv = tmp_path / "drv"
    drv.mkdir()
    ws = workstream(drv / "ws.json", steps, max_workers=1)
    killed = subprocess.run(
        [*STEPLEDGER, "run", str(ws), "--db", fleet.db, "--on-workers"], cwd=drv, capture_output=True,
        env={**driver_env(), "STEPLEDGER_KILL_AT": f"after_append:{nth}"}, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -9
    [(run_id,)] = query(fleet.db, "SELECT run_id FROM runs")
    resumed = cli(fleet.db, "resume", str(run_id), "--json", cwd=drv)
    assert resumed.returncode == 0, resumed.stderr
    lines = sorted(side.read_text().splitlines())
    assert lines == ["s0 1", "s1 1", "s2 1"]  # each step once, by its first attempt
    said = cli(fleet.db, "events", str(run_id), "--json", cwd=drv).stdout
    events = [json.loads(line) for line in said.splitlines()]
    assert not [e for e in events if e["type"] == "step.started" and e["payload"]["attempt"] != 1]


def test_a_batch_enqueues_the_jobs_procrastinate_s_own_defer_makes(pg_url: str, tmp_path: Path) -> None:
    """defer_in feeds Procrastinate's batch function column by column: each job must be the one
    Procrastinate's own `defer` makes for the same attempt (queue, task, priority, both locks,
    arguments, not scheduled), the ids must come back in the order given, and an attempt that
    already has a waiting job gets that job's id, not a second job."""
    import psycopg

    from stepledger.engine.fleet import jobs, schema
    from stepledger.engine.fleet.settings import conninfo

    def spec(step: str, run: str = "run-b") -> AttemptSpec:
        return AttemptSpec(run, step, 1, "shell", (f"echo {step}",), (), str(tmp_path), {"K": step}, None,
                           run_dir=str(tmp_path / ".stepledger/runs" / run))  # fmt: skip

    columns = "queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, status"
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        app = jobs.make_app(conninfo(pg_url))
        with app.open():
            theirs = jobs.defer(app, spec("a", run="run-theirs"), "gpu")
        with conn.transaction():
            first = jobs.defer_in(conn, [(spec("b"), "default")])
        with conn.transaction():
            ids = jobs.defer_in(conn, [(spec("c"), "gpu"), (spec("b"), "default"), (spec("a"), "gpu")])
        rows = {
            lock: rest
            for lock, *rest in conn.execute(f"SELECT queueing_lock, id, {columns} FROM procrastinate_jobs")
        }
    assert ids[1] == first[0]  # waiting already: the same job
    assert [rows["run-b/c/1"][0], rows["run-b/b/1"][0], rows["run-b/a/1"][0]] == ids
    assert len(rows) == 4  # no second job for b
    assert rows["run-theirs/a/1"][0] == theirs
    ours, reference = rows["run-b/a/1"][1:], rows["run-theirs/a/1"][1:]
    # Field by field, Procrastinate's own job for the same attempt, but for the run's name.
    assert ours[:3] == reference[:3] == ["gpu", reference[1], 0]
    assert (ours[3], reference[3]) == ("run-b/a", "run-theirs/a")  # the step's lock
    assert ours[5] == json.loads(json.dumps(reference[5]).replace("run-theirs", "run-b"))  # the arguments
    assert ours[6:] == reference[6:] == [None, "todo"]
