"""Queues: an attempt sent to a queue no worker serves waits; a worker started on that queue runs it.

The attempts are handed to the FleetDispatcher directly, as the reactor hands them, with the queues
a workstream's `queue` fields give (tests/unit/test_step_queue.py); the workers are real
`stepledger worker`s.
"""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from fleetkit import Fleet, query

from stepledger.engine.execution.spec import AttemptResult, AttemptSpec
from stepledger.engine.fleet.dispatcher import FleetDispatcher

pytestmark = pytest.mark.postgres


def test_an_attempt_on_a_queue_without_a_worker_waits_for_one(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("cpu-box")  # serves only the default queue
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    dispatcher = FleetDispatcher(fleet.db, 2, results, {"train": "gpu", "prep": "default"})
    dispatcher.start()
    try:
        side = tmp_path / "side.log"
        for sid in ("prep", "train"):
            task = f"echo {sid} $STEPLEDGER_HOSTNAME >> {side}"
            run_dir = str(tmp_path / ".stepledger/runs/run-q")
            spec = AttemptSpec(
                "run-q", sid, 1, "shell", (task,), (), str(tmp_path), {}, None, run_dir=run_dir
            )
            slot = dispatcher.idle_worker()
            assert slot is not None
            dispatcher.submit(slot, spec)
        first = results.get(timeout=60)
        assert (first.step_id, first.passed) == ("prep", True)
        # The gpu attempt is still waiting: its job is queued and nothing of it ran.
        assert query(fleet.db, "SELECT status FROM procrastinate_jobs WHERE queue_name = 'gpu'") == [
            ("todo",)
        ]
        assert side.read_text() == "prep cpu-box\n"
        fleet.start("gpu-box", "--queue", "gpu")
        second = results.get(timeout=60)
        assert (second.step_id, second.passed) == ("train", True)
        assert side.read_text() == "prep cpu-box\ntrain gpu-box\n"
    finally:
        dispatcher.shutdown()
