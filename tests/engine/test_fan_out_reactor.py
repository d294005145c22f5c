"""for_each in the reactor, on an in-memory log and an in-process pool: when the expansion is
recorded, what its steps wait for, that a recorded expansion is never read again, and a batch
holding an expansion that loses a race with an operator."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from fakes import threaded_reactor

from stepledger.engine.read.replay import verify_run
from stepledger.engine.session.runs import drive as drive_to_end
from stepledger.engine.workstream.model import Step, StepGroup, Workstream
from stepledger.events import (
    RunStarted,
    StepPassed,
    StepReady,
    StepSkipped,
    StepStarted,
    StreamWrite,
    run_stream,
    step_stream,
)
from stepledger.events.state import fold
from stepledger.events.types import StepExpanded
from stepledger.store.memory import InMemoryEventStore

SOURCE = "${steps.list.outputs.files}"


def _workstream(**process: Any) -> Workstream:
    steps = (
        Step(id="list", tool="fake", tasks=("pass",)),
        Step(id="process", tool="fake", tasks=("item:${for_each.index}=${for_each.item}", "sleep:0.02"),
             depends_on=("list",), requires=("list",), for_each=SOURCE, **process),
        Step(id="summary", tool="fake", tasks=("pass",), depends_on=("process",), requires=("process",)),
    )  # fmt: skip
    return Workstream(id="ws", steps=steps, step_groups=(StepGroup("g", ("process",), "sequential"),))


def _store_with_list_passed(files: Any, tmp_path: Path, store: Any = None) -> Any:
    store = store or InMemoryEventStore()
    started = RunStarted(workstream_id="ws", workstream={}, workstream_hash="", source_path="",
                         workdir=str(tmp_path))  # fmt: skip
    store.append([StreamWrite("r1", run_stream("r1"), 0, [started])])
    now = time.time()
    events = [StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1),
              StepPassed(attempt=1, started_at=now, finished_at=now, outputs={"files": files})]  # fmt: skip
    store.append([StreamWrite("r1", step_stream("r1", "list"), 0, events)])
    return store


def _drive(store: Any, ws: Workstream, tmp_path: Path) -> tuple[str, Any]:
    reactor = threaded_reactor(store, ws, fold("r1", store.read_run("r1")), tmp_path, max_workers=3)
    return drive_to_end(reactor), reactor.pool


def _positions(store: InMemoryEventStore, type_name: str) -> dict[str, int]:
    return {e.step_id: e.position for e in store.read_run("r1") if e.type == type_name and e.step_id}


def test_the_expansion_is_recorded_once_before_its_steps_and_they_run_one_per_item(tmp_path: Path) -> None:
    store = _store_with_list_passed(["a", {"k": 1}, 3], tmp_path)
    outcome, pool = _drive(store, _workstream(), tmp_path)
    assert outcome == "passed"
    expanded = [e for e in store.read_run("r1") if e.type == StepExpanded.type_name]
    assert len(expanded) == 1 and expanded[0].step_id == "process"
    ids = ["process[0]", "process[1]", "process[2]"]
    assert expanded[0].payload == {"source": "list.outputs.files", "items": ["a", {"k": 1}, 3], "ids": ids}
    ready, passed, started = (_positions(store, t) for t in ("step.ready", "step.passed", "step.started"))
    # Nothing of an expansion is recorded before the expansion itself.
    assert all(expanded[0].position < ready[sid] for sid in ids)
    assert "process" not in ready and "process" not in started  # the for_each step itself never runs
    assert all(passed[sid] < started["summary"] for sid in ids)  # its dependent waits for every one
    tasks = {spec.step_id: spec.tasks[0] for spec in pool.submitted}
    assert [tasks[sid] for sid in ids] == ["item:0=a", 'item:1={"k": 1}', "item:2=3"]
    assert sorted(spec.step_id for spec in pool.submitted) == [*ids, "summary"]
    spans = sorted((e.payload["started_at"], e.payload["finished_at"]) for e in store.read_run("r1")
                   if e.type == "step.passed" and e.step_id in ids)  # fmt: skip
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))  # group "g"
    final = fold("r1", store.read_run("r1"))
    assert final.steps["process"].state == "expanded"
    assert {final.steps[sid].state for sid in [*ids, "summary"]} == {"passed"}
    assert verify_run(store, "r1") == []


def test_a_recorded_expansion_is_what_a_resumed_reactor_runs(tmp_path: Path) -> None:
    # The list step's output says three items, the log says the run expanded two: the log wins,
    # since the list is read once, when the expansion is recorded.
    store = _store_with_list_passed(["a", "b", "c"], tmp_path)
    expanded = StepExpanded(source="list.outputs.files", items=["x", "y"], ids=["process[0]", "process[1]"])
    store.append([StreamWrite("r1", step_stream("r1", "process"), 0, [expanded])])
    outcome, pool = _drive(store, _workstream(), tmp_path)
    assert outcome == "passed"
    assert sorted(spec.tasks[0] for spec in pool.submitted if spec.step_id != "summary") == [
        "item:0=x",
        "item:1=y",
    ]
    assert len([e for e in store.read_run("r1") if e.type == StepExpanded.type_name]) == 1
    assert "process[2]" not in fold("r1", store.read_run("r1")).steps
    assert verify_run(store, "r1") == []


class _OperatorFirst(InMemoryEventStore):
    """A log where an operator skips the for_each step just before the reactor's expansion lands."""

    def append(self, writes: Any, along: Any = None) -> Any:
        if not getattr(self, "raced", False) and any(
            isinstance(e, StepExpanded) for w in writes for e in w.events
        ):
            self.raced = True
            stream = step_stream("r1", "process")
            skip = StepSkipped(by="operator", reason="not today")
            super().append([StreamWrite("r1", stream, self.stream_version(stream), [skip])])
        return super().append(writes, along)


def test_an_expansion_that_loses_a_race_is_dropped_with_its_batch(tmp_path: Path) -> None:
    store = _store_with_list_passed(["a", "b"], tmp_path, _OperatorFirst())
    outcome, pool = _drive(store, _workstream(), tmp_path)
    assert outcome == "passed" and store.raced
    final = fold("r1", store.read_run("r1"))
    # The log has the skip and no expansion: the reactor's graph is the log's again.
    assert final.steps["process"].state == "skipped"
    assert not [e for e in store.read_run("r1") if e.type == StepExpanded.type_name]
    assert [spec.step_id for spec in pool.submitted] == ["summary"]
    assert not any(sid.startswith("process[") for sid in final.steps)
    assert verify_run(store, "r1") == []
