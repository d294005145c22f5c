"""The saga's pure parts: reading rollback progress from events, planning, step-output substitution."""

from __future__ import annotations

from typing import Any, Literal

from stepledger.engine.saga.log import parameter_env, plan_rollback, read_rollback, resolve
from stepledger.engine.workstream.model import Compensation, Saga, Step, Workstream
from stepledger.events import RecordedEvent
from stepledger.events.state import fold


class Log:
    """Builds a run's recorded events by hand, with positions and stream versions."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.versions: dict[str, int] = {}

    def add(self, step: str | None, type_: str, **payload: Any) -> Log:
        stream = f"r1/{step}" if step else "r1"
        self.versions[stream] = self.versions.get(stream, 0) + 1
        position = len(self.events) + 1
        self.events.append(
            RecordedEvent(
                position,
                f"e{position}",
                "r1",
                stream,
                self.versions[stream],
                type_,
                1,
                payload,
                1000.0 + position,
            )
        )
        return self

    def passed(self, step: str) -> Log:
        return self.add(step, "step.passed", attempt=1, started_at=0.0, finished_at=1.0, outputs={})


def ws(order: Literal["reverse", "parallel"] = "reverse") -> Workstream:
    comp = Compensation(action="undo")
    steps = (
        Step(id="a", tool="shell", compensation=comp),
        Step(id="b", tool="shell", compensation=comp),
        Step(id="c", tool="shell"),
        Step(id="d", tool="shell", compensation=comp),
    )
    return Workstream(id="w", steps=steps, saga=Saga(enabled=True, rollback_order=order))


def started(log: Log, plan: list[str]) -> Log:
    return log.add(None, "rollback.started", failed_steps=["d"], compensations=plan, order="reverse")


def test_plan_is_reverse_completion_order_of_passed_steps_with_a_compensation() -> None:
    log = Log().passed("b").passed("c").passed("a")
    log.add("d", "step.tripped", attempt=1, reason="max_attempts")
    run = fold("r1", log.events)
    assert plan_rollback(run, ws(), log.events) == (["a", "b"], ["c"])
    assert plan_rollback(run, ws("parallel"), log.events) == (["b", "a"], ["c"])


def test_progress_counts_failures_and_sees_what_is_in_flight() -> None:
    log = started(Log().passed("a").passed("b"), ["b", "a"])
    log.add(None, "compensation.started", step_id="b", attempt=1, action="undo")
    log.add(
        None, "compensation.failed", step_id="b", attempt=1, reason="exit_code", started_at=0, finished_at=1
    )
    log.add(None, "compensation.started", step_id="b", attempt=2, action="undo")
    log.add(
        None, "compensation.failed", step_id="b", attempt=2, reason="interrupted", started_at=0, finished_at=1
    )
    log.add(None, "compensation.started", step_id="b", attempt=3, action="undo")
    state = read_rollback(log.events)
    assert state.open and state.plan == ["b", "a"]
    b = state.progress["b"]
    assert (b.counted_failures, b.in_flight, b.last_attempt, b.passed) == (1, 3, 3, False)
    assert state.progress["a"].last_attempt == 0


def test_a_finished_rollback_stays_finished_unless_a_step_passed_again() -> None:
    log = started(Log().passed("a"), ["a"])
    log.add(None, "compensation.started", step_id="a", attempt=1, action="undo")
    log.add(None, "compensation.passed", step_id="a", attempt=1, started_at=0, finished_at=1)
    log.add(None, "rollback.finished", outcome="rolled_back", compensated=["a"])
    assert read_rollback(log.events).finished_outcome == "rolled_back"
    log.add("a", "step.retry_requested", by="op").passed("a")
    again = read_rollback(log.events)
    assert again.started_at is None and not again.open  # a new rollback is due
    # ...which undoes `a` again (passed after its last compensation); attempt numbers keep counting.
    run = fold("r1", log.events)
    assert plan_rollback(run, ws(), log.events)[0] == ["a"]


def test_step_outputs_and_parameters() -> None:
    comp = Compensation(
        action="refund ${step_output.tx} ${ step_output.amount } ${step_output.nope}",
        parameters={"tx": "${step_output.tx}", "meta": {"n": "${step_output.amount}"}, "k": 3},
    )
    resolved = resolve(comp, {"tx": "t-1", "amount": 12.5})
    params = resolved.parameters
    # A shell action reads each output from its variable (tests/unit/test_step_output_quoting.py).
    refs = '"${STEPLEDGER_OUTPUT_TX}" "${STEPLEDGER_OUTPUT_AMOUNT}" "${STEPLEDGER_OUTPUT_NOPE}"'
    assert resolved.action == f"refund {refs}" and resolved.missing == {"nope"}
    assert resolved.env["STEPLEDGER_OUTPUT_AMOUNT"] == "12.5" and resolved.env["STEPLEDGER_OUTPUT_NOPE"] == ""
    assert params == {"tx": "t-1", "meta": {"n": "12.5"}, "k": 3}
    env = parameter_env(params)
    assert env["STEPLEDGER_PARAM_TX"] == "t-1" and env["STEPLEDGER_PARAM_K"] == "3"
    assert env["STEPLEDGER_PARAM_META"] == '{"n": "12.5"}'
