"""A worker's jobs start on threads of their own, several at once: each must get a process of the
worker's local pool to itself (engine/fleet/worker.py `_start_on_pool`). Two that picked the same
idle process failed their attempt *error* ("its job ended without an outcome"), seen under load."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from stepledger.engine.execution.pool import WorkerHandle, WorkerPool
from stepledger.engine.execution.spec import AttemptResult, AttemptSpec
from stepledger.engine.fleet.worker import FleetWorker

JOBS = 4


class SlowToChoose(WorkerPool):
    """The real pool, slow to name an idle process, as a loaded machine is between the choice and
    the submit (the window two starting jobs can share)."""

    def idle_worker(self, exclude: object = ()) -> WorkerHandle | None:
        found = super().idle_worker()
        time.sleep(0.05)
        return found


def _spec(tmp_path: Path, n: int) -> AttemptSpec:
    # Each attempt lasts until every job has started: they all run at once, so each needs a process.
    wait = f"while [ ! -e {tmp_path / 'go'} ]; do sleep 0.01; done"
    return AttemptSpec(run_id="r1", step_id=f"s{n}", attempt=1, tool="shell", tasks=(wait,),
                       acceptance_tests=(), workdir=str(tmp_path), env={}, timeout=None,
                       run_dir=str(tmp_path / "run"))  # fmt: skip


def test_jobs_starting_together_each_get_a_process_of_their_own(pg_url: str, tmp_path: Path) -> None:
    worker = FleetWorker(pg_url, tmp_path, concurrency=JOBS, queues=[], grace=None)
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    worker.pool = SlowToChoose(JOBS, results)
    worker.pool.start()
    errors: list[BaseException] = []
    together = threading.Barrier(JOBS)

    def start(n: int) -> None:
        together.wait()
        try:
            worker._start_on_pool(_spec(tmp_path, n))
        except BaseException as error:  # what the job would have died of
            errors.append(error)

    try:
        threads = [threading.Thread(target=start, args=(n,)) for n in range(JOBS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        (tmp_path / "go").touch()
        got = [results.get(timeout=30) for _ in range(JOBS)]
        assert sorted(r.step_id for r in got if r.passed) == [f"s{n}" for n in range(JOBS)]
        assert len({r.worker_pid for r in got}) == JOBS  # each on a process of its own
    finally:
        worker.pool.shutdown(kill_running=True)
