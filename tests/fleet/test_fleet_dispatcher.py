"""The FleetDispatcher's safety nets, with real `stepledger worker` processes on the real PostgreSQL."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest
from fleetkit import Fleet

from stepledger.engine.execution.spec import AttemptResult, AttemptSpec
from stepledger.engine.fleet import jobs
from stepledger.engine.fleet.dispatcher import FleetDispatcher

pytestmark = pytest.mark.postgres


def test_a_job_that_ends_without_an_outcome_is_settled_as_an_error(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_payload = jobs.spec_payload

    def unreadable(spec: AttemptSpec) -> dict[str, Any]:
        return {**real_payload(spec), "not_a_spec_field": 1}  # the worker's job raises on it

    monkeypatch.setattr(jobs, "spec_payload", unreadable)
    fleet.start("m1")
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    dispatcher = FleetDispatcher(fleet.db, 1, results)
    dispatcher.start()
    try:
        side = tmp_path / "side.log"
        run_dir = str(tmp_path / ".stepledger/runs/run-e")
        secret = "s3cret-in-args-93"
        spec = AttemptSpec("run-e", "x", 1, "shell", (f"echo ran >> {side}",), (), str(tmp_path),
                           {"T": secret}, None, run_dir=run_dir)  # fmt: skip
        slot = dispatcher.idle_worker()
        assert slot is not None
        dispatcher.submit(slot, spec)
        result = results.get(timeout=60)  # without the safety net the driver would wait forever
        assert (result.step_id, result.attempt, result.passed, result.reason) == ("x", 1, False, "error")
        assert "ended without an outcome" in result.output_excerpt
        assert not side.exists()
        assert "not_a_spec_field" in fleet.output("m1")  # the worker said what went wrong
        assert secret not in fleet.output("m1")  # and not with the job's arguments
    finally:
        dispatcher.shutdown()
