"""Hostile and absurd input is one problem each, found fast: workstream/limits.py and where it is applied."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stepledger.engine.run.policy import decide_after_failure, retry_delay
from stepledger.engine.session.prerun import RunSetupError, check_max_workers, check_run_inputs, cwd_problem
from stepledger.engine.workstream import load_workstream, validate_problems, workstream_from_data
from stepledger.engine.workstream.limits import MAX_ALIAS_VALUES, MAX_FILE_BYTES, MAX_WORKERS
from stepledger.engine.workstream.model import BreakerPolicy, RetryPolicy, Step
from stepledger.engine.workstream.problems import WorkstreamInvalid
from stepledger.events.state import StepState

BOMB = "\n".join(
    [
        "id: ws-bomb",
        "tool: shell",
        "tasks: ['true']",
        "metadata:",
        '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    + [f"  {n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
)


def errors(path: Path) -> list[str]:
    _, problems = validate_problems(path, env={}, check_tools=False)
    return [p.render() for p in problems if p.severity == "error"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    found = errors(write(tmp_path, "bomb.yaml", BOMB))
    assert time.monotonic() - started < 5
    assert len(found) == 1 and "aliases expand to" in found[0] and f"{MAX_ALIAS_VALUES:,}" in found[0]


def test_aliases_within_the_limit_still_load(tmp_path: Path) -> None:
    text = "id: ws\nretry: &r {strategy: fixed, initial_delay: 1}\nsteps:\n" + "".join(
        f"  - {{id: s{i}, tool: shell, tasks: ['true'], retry: *r}}\n" for i in range(50)
    )
    ws = load_workstream(write(tmp_path, "ok.yaml", text), env={})
    assert len(ws.steps) == 50 and ws.steps[7].retry.strategy == "fixed"


def test_a_recursive_alias_is_one_problem(tmp_path: Path) -> None:
    found = errors(
        write(tmp_path, "rec.yaml", "id: ws\ntool: shell\ntasks: ['true']\nmetadata: &m\n  self: *m\n")
    )
    assert len(found) == 1 and "recursive alias" in found[0] and "rec.yaml:4:" in found[0]


def test_a_file_over_the_size_limit_is_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(
        '{"id": "ws", "tool": "shell", "tasks": ["true"], "description": "' + "x" * MAX_FILE_BYTES + '"}'
    )
    found = errors(path)
    assert len(found) == 1 and "larger than 10 MB" in found[0]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "nan.json",
            '{"id": "ws", "tool": "shell", "tasks": ["true"], "timeout": NaN}',
            "timeout: nan is not a number",
        ),
        (
            "inf.json",
            '{"id": "ws", "tool": "shell", "tasks": ["true"], "metadata": {"x": -Infinity}}',
            "metadata.x: -inf",
        ),
        ("huge.json", '{"id": "ws", "tool": "shell", "tasks": ["true"], "timeout": 1e999}', "timeout: inf"),
        ("inf.yaml", "id: ws\ntool: shell\ntasks: ['true']\ntimeout: .inf\n", "timeout: inf"),
        (
            "surrogate.json",
            '{"id": "ws", "tool": "shell", "tasks": ["true"], "description": "\\ud800"}',
            "lone surrogate",
        ),
        (
            "surrogate.yaml",
            'id: ws\ntool: shell\ntasks: ["true"]\nenv: {"\\ud800": x}\n',
            "field name contains a lone surrogate",
        ),
        (
            "nul.json",
            '{"id": "ws", "tool": "shell", "tasks": ["true"], "cwd": "a\\u0000b"}',
            "cwd: contains a NUL",
        ),
        (
            "bigint.json",
            '{"id": "ws", "tool": "shell", "tasks": ["true"], "metadata": {"n": ' + "1" * 5000 + "}}",
            "4300 digits",
        ),
        (
            "bigint.yaml",
            "id: ws\ntool: shell\ntasks: ['true']\nmetadata: {n: " + "1" * 5000 + "}\n",
            "4300 digits",
        ),
        (
            "deep.json",
            '{"id": "ws", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "nested deeper than 100",
        ),
        ("deep.yaml", "id: ws\nmetadata: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 100"),
        (
            "deep150.json",
            '{"id": "ws", "metadata": ' + "[" * 150 + "]" * 150 + "}",
            "metadata[0][0][0]: nested deeper",
        ),
        ("latin1.json", "", "not UTF-8"),
    ],
)
def test_values_json_cannot_hold_are_one_problem_each(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = write(tmp_path, name, text)
    if name == "latin1.json":
        path.write_bytes(b'{"id": "caf\xe9"}')
    found = errors(path)
    assert len(found) == 1, found
    assert expected in found[0] and len(found[0]) < 300


@pytest.mark.parametrize(
    ("execution", "ok"),
    [({"max_workers": MAX_WORKERS}, True), ({"max_workers": MAX_WORKERS + 1}, False),
     ({"max_workers": 1_000_000_000}, False), ({"max_workers": "${env.W:-1000000000}"}, False),
     ({"max_workers": "auto"}, True), ({"timeout_per_step": 1e300}, False),
     ({"rate_limit_delay": 10**400}, False)],
)  # fmt: skip
def test_worker_counts_and_seconds_have_an_upper_bound(execution: dict, ok: bool) -> None:
    data = {"id": "ws", "tool": "shell", "tasks": ["true"], "execution": execution}
    ws, problems = workstream_from_data(data, "f.json", env={})
    assert (not problems) is ok, problems
    if ok:
        assert ws is not None and 1 <= ws.execution.max_workers <= MAX_WORKERS
    else:
        assert "≤" in problems[0].message and len(problems[0].render()) < 200


def test_a_step_group_cannot_ask_for_more_workers_than_the_limit() -> None:
    data = {"id": "ws", "steps": [{"id": "a", "tool": "shell"}],
            "step_groups": [{"id": "g", "steps": ["a"], "max_workers": 10**9}]}  # fmt: skip
    _, problems = workstream_from_data(data, "f.json", env={})
    assert [p.path for p in problems] == ["step_groups[0].max_workers"]


def test_error_patterns_compile_at_validate_time() -> None:
    data = {"id": "ws", "tool": "shell", "circuit_breaker": {"error_patterns": ["ok", "(unclosed"]}}
    _, problems = workstream_from_data(data, "f.json", env={})
    assert len(problems) == 1
    assert (
        problems[0].path == "circuit_breaker.error_patterns[1]"
        and "not a valid regular expression" in problems[0].message
    )


def test_the_max_workers_option_is_bounded() -> None:
    check_max_workers(MAX_WORKERS)
    for bad in (0, MAX_WORKERS + 1, 10**9):
        with pytest.raises(RunSetupError, match=f"from 1 to {MAX_WORKERS}"):
            check_max_workers(bad)


def _failed(output: str) -> StepState:
    state = StepState("s")
    state.state, state.attempt, state.counted_failures, state.last_error = "failed", 1, 1, output
    return state


def test_a_backtracking_error_pattern_times_out_and_counts_as_no_match() -> None:
    breaker = BreakerPolicy(max_attempts=3, error_patterns=("(a|aa)+$", "a!"))
    step = Step(id="s", tool="shell", circuit_breaker=breaker)
    started = time.monotonic()
    decision = decide_after_failure(step, _failed("a" * 2000 + "!"))
    assert time.monotonic() - started < 10
    # The slow pattern counted as no match; the next one matched, so the step is retried.
    assert decision.kind == "retry"
    assert decision.warning is not None and "'(a|aa)+$'" in decision.warning and "step s" in decision.warning
    only_slow = Step(id="s", tool="shell", circuit_breaker=BreakerPolicy(error_patterns=("(a|aa)+$",)))
    decision = decide_after_failure(only_slow, _failed("a" * 2000 + "!"))
    assert decision.kind == "trip" and decision.reason == "not_retryable" and decision.warning


def test_a_pattern_that_matches_gives_no_warning() -> None:
    step = Step(
        id="s", tool="shell", circuit_breaker=BreakerPolicy(max_attempts=3, error_patterns=("timeout",))
    )
    decision = decide_after_failure(step, _failed("read timeout"))
    assert decision.kind == "retry" and decision.warning is None


def test_exponential_backoff_after_many_failures_stays_a_number() -> None:
    policy = RetryPolicy(strategy="exponential", initial_delay=1.0, max_delay=30.0, jitter=False)
    assert retry_delay(policy, 2000) == 30.0


def test_a_step_folder_no_file_system_can_hold_is_refused(tmp_path: Path) -> None:
    assert cwd_problem(tmp_path, "out/sub") is None
    assert "bytes long as a path; the limit is 4,095" in (cwd_problem(tmp_path, "a" * 5000) or "")
    assert "a folder name holds 255" in (cwd_problem(tmp_path, "b" * 300) or "")
    (tmp_path / "file").write_text("")
    assert "which is a file" in (cwd_problem(tmp_path, "file/sub") or "")
    assert "NUL" in (cwd_problem(tmp_path, "a\x00b") or "")


def test_a_runs_folder_that_is_a_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    ws = load_workstream(
        write(tmp_path, "ws.json", json.dumps({"id": "ws", "tool": "shell", "tasks": ["true"]})), env={}
    )
    (tmp_path / ".stepledger").mkdir()
    (tmp_path / ".stepledger" / "runs").write_text("")
    with pytest.raises(RunSetupError, match="runs is not a folder"):
        check_run_inputs(ws, tmp_path)
    (tmp_path / ".stepledger" / "runs").unlink()
    check_run_inputs(ws, tmp_path)
    assert (tmp_path / ".stepledger" / "runs").is_dir()


def test_load_workstream_raises_one_problem_for_a_bomb(tmp_path: Path) -> None:
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(write(tmp_path, "bomb.yml", BOMB), env={})
    assert len(caught.value.problems) == 1


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.yaml", ""),
        ("control.yaml", "\x1f"),
        ("key.json", '{"id": "ws", "tool": "shell", "a\\nb\\u2028c": 1}'),
    ],
)
def test_found_by_the_fuzz_test_each_problem_is_one_line(tmp_path: Path, name: str, text: str) -> None:
    # Every severity: an unknown key (a warning since unknown keys are not fatal) is shown too.
    _, problems = validate_problems(write(tmp_path, name, text), env={}, check_tools=False)
    found = [p.render() for p in problems]
    assert found and all(len(line.splitlines()) == 1 for line in found), found
