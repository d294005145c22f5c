"""A resumed run's pool, started as soon as the folded log says how many workers it has.

`resume` folds the log before it imports the reactor and takes the run's lease; starting the pool
then, instead of when the reactor is built, lets the workers' interpreters boot meanwhile (a
resume's start-up is part of what a crash costs: docs/performance.md). The pool is sized by the
rule the session uses (model.worker_limit) from the same recorded workstream, which the session
takes as built here instead of building it a second time.
"""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass
from typing import Any

from stepledger.events.state import RunState

from ..execution.pool import WorkerPool
from ..workstream.model import Workstream, worker_limit


@dataclass
class EarlyPool:
    """A started pool, and the recorded workstream (`source`, as folded) it was sized for."""

    pool: WorkerPool
    source: dict[str, Any]
    workstream: Workstream

    def factory(self, size: int, results: queue.SimpleQueue[Any]) -> WorkerPool:
        """The session's pool factory: this pool, or a new one if the run turned out to need another
        size (the log changed between the fold and the lease: another resume took the file anew)."""
        if size == self.pool.size:
            return self.pool
        self.pool.shutdown(kill_running=True)
        return WorkerPool(size, results)


def start_early(run: RunState, max_workers: int | None) -> EarlyPool | None:
    """Start the pool of a resume of `run` (its recorded workstream); None if that cannot be built,
    which the resume itself then reports."""
    from ..workstream.env_values import resolved_workstream
    from ..workstream.serialization import workstream_from_dict

    source = run.workstream
    try:
        # The step env values recorded as templates are resolved in this process's environment.
        workstream = workstream_from_dict(resolved_workstream(source, os.environ, run.run_id))
    except Exception:  # a log this version reads differently: the session's own build says why
        return None
    size = worker_limit(workstream, max_workers or run.options.get("max_workers"))
    python_tasks = any(step.tool == "python" for step in workstream.steps)
    pool = WorkerPool(size, queue.SimpleQueue(), python_tasks=python_tasks, fork=True)
    pool.start()
    return EarlyPool(pool, source, workstream)
