"""Event objects from payloads and back, without the frozen dataclasses' __init__ where it would
only set the fields (events/registry.py `fast_instance`, `Event.to_payload`), and RecordedEvent,
whose own __init__ and lazily decoded `event` must behave as the dataclass they replace.
"""

from __future__ import annotations

import dataclasses
import pickle
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from stepledger.events import (
    Event,
    RecordedEvent,
    StepFailed,
    StepPassed,
    StepStarted,
    all_event_classes,
    event_type,
    from_stored,
    to_stored,
)
from stepledger.events import registry as registry_module
from stepledger.events.registry import fast_instance

STARTED = StepStarted(attempt=2, host="h", pid=7, pgid=7, lease_expires_at=9.5)


def field_names(cls: type[Event]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_decoding_does_not_run_the_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = STARTED.to_payload()

    def refuse(self: Any, **fields: Any) -> None:
        raise AssertionError("the frozen dataclass __init__ ran")

    monkeypatch.setattr(StepStarted, "__init__", refuse)
    decoded = from_stored("step.started", 1, payload)
    assert decoded == STARTED and type(decoded) is StepStarted
    assert hash(decoded) == hash(STARTED) and repr(decoded) == repr(STARTED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.attempt = 3  # type: ignore[misc]  # the assignment a frozen event refuses


def sample(cls: type[Event]) -> Event:
    """An instance of `cls` with a value in every field."""
    values = {"str": "s", "int": 1, "float": 1.5, "bool": True}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name in field_names(cls):
        hint, origin = hints[name], typing.get_origin(hints[name])
        if origin is typing.Literal:
            kwargs[name] = typing.get_args(hint)[0]
        elif origin is list:
            kwargs[name] = []
        elif hint is dict[str, Any] or origin is dict:
            kwargs[name] = {"k": [1]}
        else:
            kwargs[name] = values.get(getattr(hint, "__name__", ""))
    return cls(**kwargs)


@pytest.mark.parametrize("cls", all_event_classes(), ids=lambda cls: cls.type_name)
def test_every_type_decodes_to_what_its_constructor_builds(cls: type[Event]) -> None:
    event = sample(cls)
    payload = event.to_payload()
    assert list(payload) == field_names(cls)
    fast = fast_instance(cls, payload)
    assert fast == cls(**payload) and type(fast) is cls
    assert list(vars(fast)) == field_names(cls)
    reordered = dict(reversed(list(payload.items())))  # as PostgreSQL's jsonb hands keys back
    again = fast_instance(cls, reordered)
    assert again == event and list(vars(again)) == field_names(cls)
    assert list(again.to_payload()) == field_names(cls)  # so it is stored in the fields' order


def test_payload_keys_other_than_the_fields_go_through_the_constructor() -> None:
    payload = STARTED.to_payload()
    older = {k: v for k, v in payload.items() if k not in ("trial", "reactor_pid")}
    assert fast_instance(StepStarted, older) is None
    assert from_stored("step.started", 1, older) == dataclasses.replace(STARTED, trial=False, reactor_pid=0)
    assert fast_instance(StepStarted, {**payload, "unknown": 1}) is None
    with pytest.raises(TypeError, match="unknown"):
        from_stored("step.started", 1, {**payload, "unknown": 1})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checked(Event):
    """A throw-away event type whose __post_init__ checks its field: registered by `checked_event`."""

    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("negative count")


@pytest.fixture
def checked_event() -> Iterator[type[Checked]]:
    """Checked, registered for one test."""
    yield event_type("test.checked")(Checked)
    registry_module._by_name.pop("test.checked")


def test_a_type_with_a_post_init_is_always_built_by_its_constructor(checked_event: type[Checked]) -> None:
    assert fast_instance(checked_event, {"count": 1}) is None
    assert from_stored("test.checked", 1, {"count": 1}) == checked_event(count=1)
    with pytest.raises(ValueError, match="negative"):
        from_stored("test.checked", 1, {"count": -1})


def test_to_payload_holds_the_fields_only_and_is_a_copy() -> None:
    event = StepPassed(attempt=1, started_at=0.0, finished_at=1.0, outputs={"a": 1})
    object.__setattr__(event, "_cache", "not a field")  # e.g. a cached_property of a subclass
    payload = event.to_payload()
    assert list(payload) == field_names(StepPassed)
    payload["attempt"] = 99
    assert event.attempt == 1
    assert to_stored(event)[2] == {"attempt": 1, "started_at": 0.0, "finished_at": 1.0, "outputs": {"a": 1},
                                   "recovered": False, "worker_host": "", "worker": ""}  # fmt: skip


RECORDED = RecordedEvent(
    position=3,
    event_id="e",
    run_id="r",
    stream="r/a",
    version=2,
    type="step.failed",
    schema_version=1,
    payload={"attempt": 1, "reason": "timeout", "started_at": 0.5, "finished_at": 2.0},
    recorded_at=10.0,
)


def test_a_recorded_event_is_the_frozen_dataclass_it_was() -> None:
    fields = [f.name for f in dataclasses.fields(RecordedEvent)]
    assert fields == ["position", "event_id", "run_id", "stream", "version", "type", "schema_version",
                      "payload", "recorded_at"]  # fmt: skip
    positional = RecordedEvent(*(getattr(RECORDED, name) for name in fields))
    assert positional == RECORDED and positional != dataclasses.replace(positional, version=3)
    assert list(vars(positional)) == fields
    assert repr(RECORDED).startswith("RecordedEvent(position=3, event_id='e', run_id='r'")
    assert dataclasses.replace(RECORDED, position=4).position == 4
    assert dataclasses.astuple(RECORDED)[0] == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECORDED.position = 5  # type: ignore[misc]  # the assignment a frozen event refuses
    with pytest.raises(TypeError):
        RecordedEvent(1, "e", "r", "r/a", 1, "step.ready", 1, {})  # type: ignore[call-arg]  # recorded_at missing


def test_the_event_is_decoded_once_on_first_use() -> None:
    recorded = dataclasses.replace(RECORDED)
    assert "event" not in vars(recorded)
    event = recorded.event
    assert event == StepFailed(attempt=1, reason="timeout", started_at=0.5, finished_at=2.0)
    assert recorded.event is event and vars(recorded)["event"] is event
    assert recorded == RECORDED  # the decoded event is no field: equality and hashing ignore it
    copy = pickle.loads(pickle.dumps(recorded))
    assert copy == recorded and copy.event == event
    assert RecordedEvent.event is not None  # looked up on the class: the descriptor itself


def test_step_id_comes_from_the_stream() -> None:
    assert RECORDED.step_id == "a"
    assert dataclasses.replace(RECORDED, stream="r").step_id is None
    assert dataclasses.replace(RECORDED, stream="r/a/b").step_id == "a/b"
