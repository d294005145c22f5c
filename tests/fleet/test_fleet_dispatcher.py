"""The FleetDispatcher's safety nets, with real `stepledger worker` processes on the real PostgreSQL."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fleetkit import Fleet, query, wait_for

from stepledger.engine.execution.spec import AttemptResult, AttemptSpec
from stepledger.engine.fleet import dispatcher as dispatcher_module
from stepledger.engine.fleet import jobs, ledger
from stepledger.engine.fleet.dispatcher import FleetDispatcher
from stepledger.engine.fleet.settings import conninfo

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


def test_after_its_listener_reconnects_the_driver_gives_workers_a_stall_timeout_to_be_heard(
    fleet: Fleet, tmp_path: Path
) -> None:
    """No worker could write a heartbeat while the database was away: right after the driver's
    listener is back, a heartbeat as old as the outage is no proof of death."""
    from stepledger.engine.fleet.settings import stall_seconds

    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    dispatcher = FleetDispatcher(fleet.db, 1, results)
    dispatcher.start()
    try:
        assert dispatcher._fence_after == 0.0  # its first connection: no outage behind it
        listening = "SELECT pid FROM pg_stat_activity WHERE query LIKE %s"
        [(pid,)] = query(fleet.db, listening, f"LISTEN {dispatcher._wake_channel}%")
        before = time.monotonic()
        query(fleet.db, "SELECT pg_terminate_backend(%s)", pid)  # its connection breaks, as in an outage
        wait_for(lambda: dispatcher._fence_after > before, "the listener to reconnect")
        assert dispatcher._fence_after >= before + stall_seconds() - 0.5
        # A stalled job of an attempt in flight is not fenced while that time runs...
        with psycopg.connect(conninfo(fleet.db), autocommit=True) as conn:
            key = ("run-r", "x", 1)
            dispatcher._inflight[key] = (-1, 424242)
            real = dispatcher_module.stalled_jobs
            dispatcher_module.stalled_jobs = lambda conn: {424242}
            try:
                dispatcher._fence_stalled(conn)
                assert ledger.attempt(conn, key) is None
                dispatcher._fence_after = time.monotonic() - 1  # ...and is once it has run
                dispatcher._fence_stalled(conn)
                row = ledger.attempt(conn, key)
                assert row is not None and row.result is not None and row.result["reason"] == "interrupted"
            finally:
                dispatcher_module.stalled_jobs = real
                dispatcher._inflight.pop(key, None)
    finally:
        dispatcher.shutdown()
