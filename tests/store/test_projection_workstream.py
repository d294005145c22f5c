"""The runs projection keeps the workstream the log says, although run events do not rewrite it."""

from __future__ import annotations

from stepledger.events import RunFinished, RunResumed, RunStarted, StepReady, StreamWrite
from stepledger.events.state import fold
from stepledger.store.connect import open_store


def test_the_workstream_follows_started_and_resumed_with_a_new_file(sql_url: str) -> None:
    store = open_store(sql_url)
    try:
        first, second = (
            {"id": "ws", "steps": [{"id": "a"}]},
            {"id": "ws", "steps": [{"id": "a"}, {"id": "b"}]},
        )
        started = RunStarted(
            workstream_id="ws", workstream=first, workstream_hash="h1", source_path="ws.json", workdir="."
        )
        store.append([StreamWrite("r1", "r1", 0, [started])])
        store.append([StreamWrite("r1", "r1/a", 0, [StepReady()])])
        store.append([StreamWrite("r1", "r1", 1, [RunResumed(host="h", pid=1)])])  # same file
        resumed = store.run_state("r1")
        assert resumed is not None and resumed.workstream == first
        store.append([StreamWrite("r1", "r1", 2, [RunResumed(host="h", pid=2, workstream=second,
                                                             workstream_hash="h2")])])  # fmt: skip
        store.append([StreamWrite("r1", "r1", 3, [RunFinished(outcome="passed")])])
        state = store.run_state("r1")
        assert state is not None
        assert state.workstream == second and state.workstream_hash == "h2"
        assert state.status == "passed"
        assert state.workstream == fold("r1", store.read_run("r1")).workstream
        store.rebuild_projections()
        rebuilt = store.run_state("r1")
        assert rebuilt is not None and rebuilt.workstream == second
    finally:
        store.close()
