"""The drain (a first Ctrl-C) as the log records it: when it is pending, how a takeover finishes it
and a typed resume ends it, and how the reactor's ledger commits it even after losing a race."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from failure_scripts import write_workstream
from fakes import threaded_reactor

from stepledger.engine.session.runs import record_run, resume_run
from stepledger.engine.session.stopping import DrainingDispatcher, pending_drain
from stepledger.engine.workstream import load_workstream
from stepledger.events import (
    Event,
    RunCancelRequested,
    RunDrainRequested,
    RunFinished,
    RunResumed,
    StreamWrite,
    run_stream,
)
from stepledger.events.state import fold
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore

DRAIN = RunDrainRequested(by="alice", reason="Ctrl-C")


@pytest.fixture
def db(sqlite_url: str) -> Iterator[EventStore]:
    store = open_store(sqlite_url)
    yield store
    store.close()


def _recorded_run(db: EventStore, tmp_path: Path, *after_start: Event) -> str:
    """A run recorded as started (nobody drives it, as after its driver died), then `after_start`:
    two steps, b after a."""
    ws = load_workstream(write_workstream(tmp_path, {"id": "ws-drain", "steps": [
        {"id": "a", "tool": "shell", "tasks": ["true"]},
        {"id": "b", "tool": "shell", "tasks": ["true"], "depends_on": ["a"]},
    ]}))  # fmt: skip
    record_run(db, ws, workdir=tmp_path, run_id="r1", options={})
    if after_start:
        db.append([StreamWrite("r1", run_stream("r1"), 1, list(after_start))])
    return "r1"


def _types(db: EventStore, run_id: str) -> list[str]:
    return [e.type for e in db.read_run(run_id)]


def test_a_drain_is_pending_until_the_run_is_resumed_or_ends(db: EventStore, tmp_path: Path) -> None:
    resumed = RunResumed(host="h", pid=1)
    run_id = _recorded_run(db, tmp_path, resumed, DRAIN, RunCancelRequested(by="bob"))
    pending = pending_drain(db.read_stream(run_stream(run_id)))
    assert pending is not None and pending.payload == {"by": "alice", "reason": "Ctrl-C"}
    db.append([StreamWrite(run_id, run_stream(run_id), 4, [resumed])])  # a typed resume
    assert pending_drain(db.read_stream(run_stream(run_id))) is None
    db.append([StreamWrite(run_id, run_stream(run_id), 5, [DRAIN, RunFinished(outcome="interrupted")])])
    assert pending_drain(db.read_stream(run_stream(run_id))) is None  # the drain ended with the run
    assert pending_drain([]) is None


def test_a_takeover_finishes_a_pending_drain_and_a_typed_resume_goes_on(
    db: EventStore, tmp_path: Path
) -> None:
    run_id = _recorded_run(db, tmp_path, DRAIN)
    taken = resume_run(db, run_id, takeover=True)
    assert taken.outcome == "interrupted"
    stream = db.read_stream(run_stream(run_id))
    assert [e.type for e in stream] == [
        "run.started", "run.drain_requested", "run.resumed", "run.drain_requested", "run.finished"
    ]  # fmt: skip
    assert stream[3].payload == {"by": "alice", "reason": "Ctrl-C"}  # asked again, as its asker's
    assert "step.started" not in _types(db, run_id)  # nothing new started
    log = (tmp_path / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()
    assert "the run's previous driver was draining it (Ctrl-C by alice): this driver finishes" in log
    again = resume_run(db, run_id)  # typed: someone's decision to go on
    assert again.outcome == "passed"
    assert _types(db, run_id).count("run.drain_requested") == 2
    assert pending_drain(db.read_stream(run_stream(run_id))) is None


def test_a_takeover_without_a_pending_drain_drives_the_run_on(db: EventStore, tmp_path: Path) -> None:
    run_id = _recorded_run(db, tmp_path, DRAIN, RunResumed(host="h", pid=1))  # resumed since the drain
    assert resume_run(db, run_id, takeover=True).outcome == "passed"
    assert _types(db, run_id).count("run.drain_requested") == 1


def test_a_drain_dropped_with_a_batch_that_lost_a_race_is_queued_again(
    db: EventStore, tmp_path: Path
) -> None:
    run_id = _recorded_run(db, tmp_path)
    ws = load_workstream(tmp_path / "ws.json")
    reactor = threaded_reactor(db, ws, fold(run_id, db.read_run(run_id)), tmp_path)  # never driven
    ledger = reactor.ledger
    idle = SimpleNamespace(results=queue.SimpleQueue())  # a pool of no worker
    pool = DrainingDispatcher(idle, lambda _: None, by="alice")
    pool.reactor = reactor
    assert not pool.drain_unrecorded()  # not draining
    pool.draining = True
    assert pool.drain_unrecorded() and [type(e) for _, e in ledger.batch] == [RunDrainRequested]
    assert pool.drain_unrecorded()  # still queued: nothing new
    assert len(ledger.batch) == 1
    # Another writer appends to the run first: the ledger's batch is dropped, the run re-folded.
    db.append([StreamWrite(run_id, run_stream(run_id), 1, [RunCancelRequested(by="bob")])])
    assert ledger.flush() is None and not ledger.batch
    assert pool.drain_unrecorded()  # queued again
    assert ledger.flush()
    assert not pool.drain_unrecorded() and pool.drain_recorded
    drains = [e for e in db.read_run(run_id) if e.type == "run.drain_requested"]
    assert [e.payload for e in drains] == [{"by": "alice", "reason": "Ctrl-C"}]
