"""Payload JSON text (events/jsontext.py): orjson's text means exactly what the standard encoder's
did, the standard encoder still decides whatever orjson would write differently or refuses, and the
U+0000 check lets `to_stored` skip its walk only when there is nothing to replace.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sqlite3
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepledger.events import (
    StepFailed,
    StepPassed,
    StepStarted,
    dumps,
    jsontext,
    loads,
    serialization,
    to_stored,
    to_stored_text,
)
from stepledger.events.jsontext import may_hold_nul
from stepledger.events.serialization import without_nul

STANDARD = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# Any text a payload may hold, U+0000, control characters and the "\u0000" spelling included
# (lone surrogates cannot be stored by any encoder: SQLite and psycopg refuse them as UTF-8).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20) | st.sampled_from(
    ["\x00", "a\x00b", "\\u0000", '\x1f\n\t"\\', "☃ 🧪 \u2028", "null", "/dev/null"]
)
finite = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e16, 1e-7, 1e15, 123.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]
)
wide_ints = st.integers() | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
json_values = st.recursive(
    st.none() | st.booleans() | wide_ints | finite | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=15,
)


def _number(text: str) -> tuple[str, Decimal, bool]:
    value = Decimal(text)
    return ("float", value, value.is_signed())  # 1e16 == 1e+16, but 1.0 is not 1 and -0.0 is not 0.0


def meaning(text: str) -> Any:
    """What JSON text says, spelling aside: key order kept, every number as its exact decimal."""
    return json.loads(text, parse_float=_number, object_pairs_hook=list)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_the_text_means_what_the_standard_encoder_wrote(value: Any) -> None:
    ours = dumps(value)
    assert isinstance(ours, str)
    assert meaning(ours) == meaning(STANDARD.encode(value))
    assert loads(ours) == loads(STANDARD.encode(value))


def paths(value: Any, path: str = "$") -> list[str]:
    """Every SQLite JSON path into `value` (its keys are plain names)."""
    if isinstance(value, dict):
        return [path, *(p for k, v in value.items() for p in paths(v, f"{path}.{k}"))]
    if isinstance(value, list):
        return [path, *(p for i, v in enumerate(value) for p in paths(v, f"{path}[{i}]"))]
    return [path]


named = st.recursive(
    st.none() | st.booleans() | wide_ints | finite | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), named, max_size=6))
def test_sqlite_json_functions_read_from_it_what_they_read_before(payload: dict[str, Any]) -> None:
    db = sqlite3.connect(":memory:")
    ours, standard = dumps(payload), STANDARD.encode(payload)
    assert db.execute("SELECT json_valid(?)", (ours,)).fetchone() == (1,)
    for path in paths(payload):
        # json_extract of an array or object gives its text back, spelling and all: types only there.
        query = "SELECT json_type(?1, ?2), CASE WHEN json_type(?1, ?2) IN ('array', 'object') THEN NULL"
        query += " ELSE json_extract(?1, ?2) END"
        assert db.execute(query, (ours, path)).fetchone() == db.execute(query, (standard, path)).fetchone()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_as_before_not_stored_as_null(bad: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"elapsed_s": bad})
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps({"results": [{"duration_s": bad, "exit_code": None}]})


def test_what_orjson_refuses_the_standard_encoder_writes_or_refuses_as_before() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(300):  # orjson stops at 254 levels
        inner.append([])
        inner = inner[0]
    for writable in [{"n": 2**70}, {"n": -(2**64)}, {1: "int key", None: "null key"}, {"d": deep}]:
        assert dumps(writable) == STANDARD.encode(writable)

    @dataclasses.dataclass
    class NotJson:
        x: int

    for refused in [{"when": datetime.datetime(2026, 1, 1)}, {"obj": NotJson(1)}, {"s": {1, 2}}]:
        with pytest.raises(TypeError, match="not JSON serializable"):
            dumps(refused)
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(cycle)


def test_a_payload_without_null_never_reaches_the_standard_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[Any] = []

    class Recording:
        def encode(self, value: Any) -> str:
            called.append(value)
            return STANDARD.encode(value)

    monkeypatch.setattr(jsontext, "_standard", Recording())
    started = StepStarted(attempt=1, host="h", pid=1, pgid=1, lease_expires_at=5.5)
    assert json.loads(dumps(started.to_payload())) == started.to_payload()
    assert called == []
    failed = StepFailed(attempt=1, reason="timeout", started_at=1.0, finished_at=2.0, exit_code=None)
    assert dumps(failed.to_payload()) == STANDARD.encode(failed.to_payload())
    assert called == [failed.to_payload()]  # a null: the standard encoder decides


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_the_nul_check_says_no_only_when_there_is_nothing_to_replace(value: Any) -> None:
    if not may_hold_nul(value):
        assert without_nul(value) is value
    if "\\u0000" in STANDARD.encode(value):  # a U+0000 somewhere (or that spelling in a string)
        assert may_hold_nul(value)


def test_the_nul_check_finds_a_nul_anywhere() -> None:
    assert not may_hold_nul({"a": "x", "b": [1, 2.5, {"c": None, "d": True}]})
    assert may_hold_nul({"a\x00": 1})
    assert may_hold_nul({"a": [{"b": ["", "x\x00"]}]})
    assert may_hold_nul({"a": "\\u0000"})  # a false alarm costs only the walk
    assert may_hold_nul({"a": 2**70, "b": "no nul"})  # orjson cannot tell: assume it may


def test_to_stored_walks_a_payload_only_when_it_may_hold_a_nul(monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[Any] = []

    def recording_walk(value: Any) -> Any:
        walked.append(value)
        return without_nul(value)

    monkeypatch.setattr(serialization, "without_nul", recording_walk)
    to_stored(StepStarted(attempt=1, host="h", pid=1, pgid=1))
    assert walked == []
    _, _, payload = to_stored(
        StepFailed(attempt=1, reason="exit_code", started_at=0, finished_at=1, output_excerpt="a\x00b")
    )
    assert walked[0]["output_excerpt"] == "a\x00b"  # then its own recursive calls
    assert payload["output_excerpt"] == "a\ufffdb"


@settings(max_examples=300, deadline=None)
@given(any_text, st.dictionaries(any_text, json_values, max_size=4))
def test_to_stored_replaces_every_nul_as_the_full_walk_does(excerpt: str, outputs: dict[str, Any]) -> None:
    failed = StepFailed(attempt=1, reason="exit_code", started_at=0, finished_at=1, output_excerpt=excerpt)
    passed = StepPassed(attempt=1, started_at=0, finished_at=1, outputs=outputs)
    for event in (failed, passed):
        _, _, payload = to_stored(event)
        assert payload == without_nul(event.to_payload())
        assert "\x00" not in json.dumps(payload, ensure_ascii=False)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(any_text, json_values, max_size=4))
def test_to_stored_text_is_to_stored_and_its_text_from_one_encoding(outputs: dict[str, Any]) -> None:
    # The SQL store writes the text to_stored_text returns; it must be the payload to_stored gives.
    event = StepPassed(attempt=1, started_at=1.0, finished_at=2.0, outputs=outputs)
    type_name, version, payload, text = to_stored_text(event)
    assert (type_name, version, payload) == to_stored(event)
    assert text == dumps(payload)
    assert without_nul(json.loads(text)) == json.loads(text)  # no U+0000 reaches the log
