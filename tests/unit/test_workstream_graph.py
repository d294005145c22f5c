"""Graph algorithms and the planner on random DAGs (hypothesis), checked against brute force."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepledger.engine.workstream import (
    CycleError,
    find_cycle,
    find_cycles,
    plan,
    topological_order,
    workstream_from_data,
)
from stepledger.engine.workstream.graph import concurrent_pairs, topo_indices
from stepledger.engine.workstream.model import Execution, Step, StepGroup, Workstream


@st.composite
def dags(draw: Any, max_nodes: int = 12) -> dict[str, tuple[str, ...]]:
    """A random DAG as {node: deps}, deps only on earlier nodes of a shuffled order."""
    n = draw(st.integers(1, max_nodes))
    names = [f"s{i}" for i in draw(st.permutations(range(n)))]
    deps = {}
    for i, name in enumerate(names):
        earlier = names[:i]
        deps[name] = (
            tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))) if earlier else ()
        )
    return deps


def workstream(deps: dict[str, tuple[str, ...]], **execution: Any) -> Workstream:
    steps = tuple(Step(id=k, tool="shell", depends_on=v, requires=v) for k, v in deps.items())
    return Workstream(id="w", steps=steps, execution=Execution(**execution))


def reaches(deps: dict[str, tuple[str, ...]], a: str, b: str) -> bool:
    """Brute force: does b (transitively) depend on a?"""
    stack, seen = list(deps[b]), set()
    while stack:
        v = stack.pop()
        if v == a:
            return True
        if v not in seen:
            seen.add(v)
            stack.extend(deps[v])
    return False


@given(dags())
def test_topological_order_puts_dependencies_first(deps: dict[str, tuple[str, ...]]) -> None:
    order = topological_order(list(deps), deps)
    position = {v: i for i, v in enumerate(order)}
    assert sorted(order) == sorted(deps)
    assert all(position[d] < position[v] for v in deps for d in deps[v])
    assert find_cycle(list(deps), deps) is None


@given(dags(), st.data())
def test_a_planted_cycle_is_always_found_and_printed(deps: dict[str, tuple[str, ...]], data: Any) -> None:
    nodes = list(deps)
    order = topological_order(nodes, deps)
    # Add an edge from an early node back to a later one: later → ... → early must exist to close it,
    # so plant a path explicitly: early depends on later, later depends on early.
    early = data.draw(st.sampled_from(order))
    later = data.draw(st.sampled_from(order[order.index(early) :]))
    planted = {**deps, early: (*deps[early], later)}
    if later != early:
        planted[later] = (*planted[later], early)
    cycle = find_cycle(nodes, planted)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) >= 2
    for u, v in itertools.pairwise(cycle):
        assert u in planted[v]  # every arrow u → v is a real edge: v depends on u
    with pytest.raises(CycleError) as caught:
        topological_order(nodes, planted)
    assert str(caught.value) == "dependency cycle: " + " → ".join(caught.value.cycle)
    # the loader reports it the same way
    data_file = {
        "id": "w",
        "steps": [{"id": k, "tool": "shell", "depends_on": list(v)} for k, v in planted.items()],
    }
    _, problems = workstream_from_data(data_file, "t.json", {})
    assert any(p.message.startswith("dependency cycle: ") and " → " in p.message for p in problems)


def test_cycles_are_reported_one_per_strong_component() -> None:
    deps = {"a": ("b",), "b": ("a",), "c": ("c",), "d": ("a", "c")}
    assert find_cycles(list(deps), deps) == [["a", "b", "a"], ["c", "c"]]


@settings(max_examples=150)
@given(dags(), st.integers(1, 4), st.data())
def test_waves_respect_dependencies_and_worker_bounds(
    deps: dict[str, tuple[str, ...]], workers: int, data: Any
) -> None:
    durations = {k: data.draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])) for k in deps}
    result = plan(workstream(deps, max_workers=workers), durations=durations)
    when = {s.id: s for s in result.schedule}
    assert sorted(when) == sorted(deps)
    for step in result.schedule:
        for dep in deps[step.id]:
            assert when[dep].finish <= step.start + 1e-9
            assert when[dep].wave < step.wave
    for step in result.schedule:  # at any start instant, at most `workers` run
        running = [s for s in result.schedule if s.start <= step.start < s.finish]
        assert len(running) <= workers
    waves = [w.steps for w in result.waves]
    assert sorted(itertools.chain(*waves)) == sorted(deps)
    assert all(len(w) <= workers for w in waves)
    assert result.sequential_time == pytest.approx(sum(durations.values()))
    assert result.critical_path_time - 1e-9 <= result.parallel_time <= result.sequential_time + 1e-9


@given(dags(max_nodes=8), st.data())
def test_critical_path_is_the_longest_path(deps: dict[str, tuple[str, ...]], data: Any) -> None:
    durations = {k: float(data.draw(st.integers(0, 5))) for k in deps}
    result = plan(workstream(deps), durations=durations)

    def longest(v: str) -> float:
        return durations[v] + max((longest(d) for d in deps[v]), default=0.0)

    assert result.critical_path_time == max(longest(v) for v in deps)
    path = result.critical_path
    assert sum(durations[v] for v in path) == result.critical_path_time
    for u, v in itertools.pairwise(path):
        assert u in deps[v]


@given(dags(), st.data())
def test_group_limits_are_respected(deps: dict[str, tuple[str, ...]], data: Any) -> None:
    members = data.draw(st.lists(st.sampled_from(sorted(deps)), unique=True, min_size=1))
    limit = data.draw(st.integers(1, 2))
    group = StepGroup("g", tuple(members), "parallel", limit)
    ws = workstream(deps, max_workers=4)
    ws = Workstream(id="w", steps=ws.steps, execution=ws.execution, step_groups=(group,))
    result = plan(ws)
    for step in result.schedule:
        running = [s for s in result.schedule if s.id in members and s.start <= step.start < s.finish]
        assert len(running) <= limit


@given(dags(), st.data())
def test_concurrent_pairs_match_brute_force(deps: dict[str, tuple[str, ...]], data: Any) -> None:
    nodes = list(deps)
    index = {v: i for i, v in enumerate(nodes)}
    preds = [[index[d] for d in deps[v]] for v in nodes]
    order = topo_indices(preds)
    assert order is not None
    bucket = (
        data.draw(st.lists(st.sampled_from(range(len(nodes))), unique=True, min_size=2))
        if len(nodes) > 1
        else []
    )
    found = {
        frozenset(p) for _, pairs, _ in concurrent_pairs(preds, order, [bucket], limit=10**6) for p in pairs
    }
    expected = {
        frozenset((a, b))
        for a, b in itertools.combinations(bucket, 2)
        if not reaches(deps, nodes[a], nodes[b]) and not reaches(deps, nodes[b], nodes[a])
    }
    assert found == expected


def test_seed_plan_one_wave_with_three_workers_two_with_two() -> None:
    deps: dict[str, tuple[str, ...]] = {"a": (), "b": (), "c": ()}
    three = plan(workstream(deps, max_workers=3))
    assert [w.steps for w in three.waves] == [("a", "b", "c")]
    assert (three.parallel_time, three.sequential_time) == (1.0, 3.0)
    assert three.saving == pytest.approx(2 / 3)
    two = plan(workstream(deps, max_workers=3), max_workers=2)
    assert [w.steps for w in two.waves] == [("a", "b"), ("c",)]


def test_seed_dependency_example_timeline() -> None:
    # The seed's A; B, C after A; D after B and C.
    deps = {"A": (), "B": ("A",), "C": ("A",), "D": ("B", "C")}
    result = plan(workstream(deps), durations={"A": 1, "B": 1, "C": 2, "D": 1})
    assert [(w.start, w.steps) for w in result.waves] == [(0, ("A",)), (1, ("B", "C")), (3, ("D",))]
    assert result.critical_path == ("A", "C", "D") and result.parallel_time == 4
    assert result.dependency_count == 4


def test_parallel_false_runs_one_at_a_time() -> None:
    result = plan(workstream({"a": (), "b": (), "c": ()}, parallel=False, max_workers=8))
    assert result.worker_limit == 1 and len(result.waves) == 3 and result.parallel_time == 3


def test_sequential_group_and_rate_limit() -> None:
    ws = workstream({"a": (), "b": (), "c": ()}, max_workers=3)
    grouped = Workstream(
        id="w",
        steps=ws.steps,
        execution=ws.execution,
        step_groups=(StepGroup("g", ("a", "b"), "sequential"),),
    )
    assert [w.steps for w in plan(grouped).waves] == [("a", "c"), ("b",)]
    limited = workstream({"a": (), "b": (), "c": ()}, max_workers=3, rate_limit_delay=0.25)
    assert [w.start for w in plan(limited).waves] == [0, 0.25, 0.5]
    assert plan(limited).parallel_time == 1.5


def test_durations_come_from_history_then_file_then_default() -> None:
    steps = (
        Step(id="a", tool="shell", estimated_duration=10),
        Step(id="b", tool="shell", estimated_duration=10),
        Step(id="c", tool="shell"),
    )
    result = plan(Workstream(id="w", steps=steps), durations={"a": 4})
    assert result.durations == {"a": 4, "b": 10, "c": 1}
    assert result.duration_sources == {"history": 1, "file": 1, "default": 1}
    assert result.time_unit == "s"
    assert plan(Workstream(id="w", steps=(Step(id="c", tool="shell"),))).time_unit == "unit"


def test_empty_workstream_plans_to_nothing() -> None:
    result = plan(Workstream(id="w", steps=()))
    assert result.waves == () and result.parallel_time == 0 and result.saving == 0
