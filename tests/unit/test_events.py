"""Events: every registered type survives the serialiser (property test), names are stable, and an
old schema version is upcast on the way in.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepledger.events import (
    Event,
    RecordedEvent,
    UnknownEventType,
    all_event_classes,
    dumps,
    event_type,
    from_stored,
    loads,
    to_stored,
    upcaster,
)
from stepledger.events import registry as registry_module

# JSON values as the log holds them: no NaN/infinity (not JSON) and no U+0000 (replaced on store).
text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30)
floats = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(-(2**53), 2**53)
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of one (JSON-shaped) field type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is str:
        return text
    if hint is bool:
        return st.booleans()
    if hint is int:
        return ints
    if hint is float:
        return floats
    if hint is Any:
        return json_values
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in args])
    if hint is type(None):
        return st.none()
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(text, strategy_for(args[1]), max_size=4)
    raise AssertionError(f"no strategy for field type {hint!r}: add one here")


def events_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


any_event = st.one_of([events_of(cls) for cls in all_event_classes()])


@settings(max_examples=300, deadline=None)
@given(any_event)
def test_every_event_type_round_trips_through_the_serialiser(event: Event) -> None:
    type_name, schema_version, payload = to_stored(event)
    stored = loads(dumps(payload))  # what a database hands back
    assert from_stored(type_name, schema_version, stored) == event
    recorded = RecordedEvent(1, "id", "r", "r/s", 1, type_name, schema_version, stored, 0.0)
    assert recorded.event == event


def test_type_names_are_stable_names_not_python_paths() -> None:
    names = [cls.type_name for cls in all_event_classes()]
    assert len(names) == len(set(names))
    for cls in all_event_classes():
        assert cls.type_name and "." in cls.type_name and cls.__module__ not in cls.type_name
        assert cls.schema_version >= 1


def test_an_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="newer stepledger"):
        from_stored("step.teleported", 1, {})


@dataclasses.dataclass(frozen=True, kw_only=True)
class FieldRenamed(Event):
    """A throw-away event type: registered by the `versioned_event` fixture, for its test only."""

    seconds: float
    label: str = ""


@pytest.fixture
def versioned_event() -> typing.Iterator[type[FieldRenamed]]:
    """FieldRenamed registered at schema version 3, with upcasters from 1 and 2."""
    event_type("test.renamed_field", schema_version=3)(FieldRenamed)

    @upcaster("test.renamed_field", 1)
    def minutes_to_seconds(payload: dict[str, Any]) -> dict[str, Any]:
        return {"seconds": payload["minutes"] * 60}

    @upcaster("test.renamed_field", 2)
    def add_label(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "label": "from v2"}

    yield FieldRenamed
    registry_module._by_name.pop("test.renamed_field")
    registry_module._upcasters.pop(("test.renamed_field", 1))
    registry_module._upcasters.pop(("test.renamed_field", 2))


def test_old_schema_versions_are_upcast_when_read(versioned_event: type[FieldRenamed]) -> None:
    assert from_stored("test.renamed_field", 1, {"minutes": 2}) == versioned_event(
        seconds=120, label="from v2"
    )
    assert from_stored("test.renamed_field", 2, {"seconds": 5}) == versioned_event(seconds=5, label="from v2")
    assert from_stored("test.renamed_field", 3, {"seconds": 5, "label": "x"}) == versioned_event(
        seconds=5, label="x"
    )
    assert to_stored(versioned_event(seconds=1.0)) == ("test.renamed_field", 3, {"seconds": 1.0, "label": ""})
