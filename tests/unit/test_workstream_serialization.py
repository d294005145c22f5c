"""The resolved model round-trips exactly through a JSON-able dict (stored in run.started)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stepledger.engine.workstream import load_workstream, workstream_from_dict, workstream_to_dict
from stepledger.engine.workstream.model import (
    BreakerPolicy,
    Compensation,
    ErrorHandling,
    Execution,
    Message,
    RetryPolicy,
    Saga,
    Step,
    StepGroup,
    Workstream,
)

ROOT = Path(__file__).resolve().parents[2]
FILES = [p for p in sorted((ROOT / "tests/workstreams").iterdir()) if p.is_file()]
FILES.append(ROOT / "examples/parallel-utilities.json")

text = st.text(max_size=8)
ids = st.text("abc-_0123", min_size=1, max_size=6)
seconds = st.floats(0.001, 1e6, allow_nan=False) | st.integers(1, 10**6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
tuples = st.lists(text, max_size=3).map(tuple)

retry = st.builds(
    RetryPolicy,
    st.booleans(),
    st.sampled_from(["exponential", "linear", "fixed"]),
    seconds,
    seconds,
    st.booleans(),
)
breaker = st.builds(
    BreakerPolicy, st.integers(1, 9), st.none() | st.integers(1, 9), seconds, tuples, st.booleans()
)
compensation = st.builds(
    Compensation,
    text,
    ids,
    st.dictionaries(text, json_values, max_size=3),
    st.none() | seconds,
    st.integers(0, 5),
)
step = st.builds(
    Step,
    id=ids,
    tool=ids,
    tasks=tuples,
    description=text,
    depends_on=tuples,
    requires=tuples,
    acceptance_tests=tuples,
    timeout=st.none() | seconds,
    env=st.dictionaries(text, text, max_size=3),
    cwd=st.none() | text,
    files_scope=tuples,
    retry=retry,
    circuit_breaker=breaker,
    compensation=st.none() | compensation,
    phase=st.none() | ids,
    estimated_duration=st.none() | seconds,
    metadata=st.dictionaries(text, json_values, max_size=3),
)
message = st.builds(
    Message, st.none() | text, st.none() | text, text, tuples, st.none() | seconds, st.booleans()
)
workstreams = st.builds(
    Workstream,
    id=ids,
    steps=st.lists(step, max_size=4).map(tuple),
    name=text,
    description=text,
    execution=st.builds(
        Execution, st.booleans(), st.integers(1, 64), st.none() | seconds, seconds, st.booleans()
    ),
    step_groups=st.lists(
        st.builds(
            StepGroup, ids, tuples, st.sampled_from(["parallel", "sequential"]), st.none() | st.integers(1, 9)
        ),
        max_size=2,
    ).map(tuple),
    error_handling=st.builds(
        ErrorHandling,
        st.sampled_from(["log_and_continue", "fail_fast", "skip_step", "escalate"]),
        st.dictionaries(st.sampled_from(["on_failure", "on_retry"]), message),
    ),
    saga=st.builds(
        Saga,
        st.booleans(),
        st.sampled_from(["reverse", "parallel"]),
        st.sampled_from(["log_and_continue", "fail_fast"]),
        st.booleans(),
        st.none() | seconds,
    ),
    metadata=st.dictionaries(text, json_values, max_size=3),
    phases=st.lists(st.fixed_dictionaries({"id": ids, "steps": st.lists(ids, max_size=2)}), max_size=2).map(
        tuple
    ),
    not_acted_on=tuples,
    annotations=st.dictionaries(text, json_values, max_size=3),
    source_path=text,
)


@given(workstreams)
def test_round_trip_of_any_workstream(ws: Workstream) -> None:
    data = workstream_to_dict(ws)
    stored = json.loads(json.dumps(data))  # what the event store gives back
    assert workstream_from_dict(stored) == ws
    assert workstream_to_dict(workstream_from_dict(stored)) == data


def test_round_trip_of_every_example_file() -> None:
    for path in FILES:
        ws = load_workstream(path, env={})
        data = json.loads(json.dumps(workstream_to_dict(ws)))
        assert workstream_from_dict(data) == ws, path


def test_dict_has_a_format_version_and_plain_lists() -> None:
    ws = load_workstream(ROOT / "tests/workstreams/ws-example-02-parallel-execution.json", env={})
    data = workstream_to_dict(ws)
    assert data["format_version"] == 1
    assert isinstance(data["steps"], list) and isinstance(data["steps"][0]["tasks"], list)


def test_an_older_dict_missing_newer_fields_still_loads() -> None:
    data: dict[str, Any] = {"id": "w", "steps": [{"id": "a", "tool": "shell"}]}
    ws = workstream_from_dict(data)
    assert ws.steps[0].retry == RetryPolicy() and ws.steps[0].metadata == {}
