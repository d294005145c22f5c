"""The execution layer runs each kind of tool in real processes: shell, python, profiles, programs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from exec_support import FIXTURES, StartedPool, make_spec, run_one, started_pool

from stepledger.engine.execution import files
from stepledger.engine.execution.recovery import probe_attempt, read_result, wait_for_attempt
from stepledger.engine.execution.spec import AttemptResult

PY_MODULE = """
import os, sys

def ok():
    print("hello from python")
    return {"x": 1}

def boom():
    raise ValueError("bad input 1234 at 0xdeadbeef")

def env():
    return {"v": os.environ.get("V"), "cwd": os.getcwd(), "step": os.environ["STEPLEDGER_STEP_ID"]}

def leaked():
    return {"v": os.environ.get("V")}

def args(a, b):
    return {"args": [a, b]}

def leave(code):
    sys.exit(int(code))
"""


@pytest.fixture(scope="module")
def pool() -> Iterator[StartedPool]:
    # One pool for the module: long-lived workers are the point, and each test uses its own
    # workdir, run dir and module names.
    with started_pool(2) as p:
        yield p


def test_shell_tool_logs_output_and_writes_the_result_file(pool: StartedPool, tmp_path: Path) -> None:
    result = run_one(*pool, make_spec(tmp_path, tasks=("echo one", "echo two >&2")))
    assert result.passed and result.reason is None and result.exit_code == 0
    log = Path(files.log_path(str(tmp_path / "run"), "s", 1)).read_text()
    assert "$ echo one\none\nexit 0 in" in log
    assert "two" in log and "two" in result.output_excerpt
    # The result reaches the pool before its file is written; the file is complete once the
    # attempt's lock is free, which is when readers (recovery) look.
    assert wait_for_attempt(str(tmp_path / "run"), "s", 1, timeout=10)
    assert read_result(str(tmp_path / "run"), "s", 1) == result
    assert probe_attempt(str(tmp_path / "run"), "s", 1) == "finished"
    assert result.started_at <= result.finished_at


def test_first_failing_task_fails_the_attempt(pool: StartedPool, tmp_path: Path) -> None:
    result = run_one(*pool, make_spec(tmp_path, tasks=("exit 3", "touch never")))
    assert not result.passed and result.reason == "exit_code" and result.exit_code == 3
    assert not (tmp_path / "never").exists()
    assert result.error_signature


def test_env_is_merged_over_the_inherited_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SL_INHERITED", "from-parent")
    monkeypatch.setenv("SL_OVERRIDE", "parent")
    with started_pool(1) as p:  # workers inherit the environment they were started with
        spec = make_spec(
            tmp_path,
            tasks=(
                'echo "$SL_INHERITED $SL_OVERRIDE $STEPLEDGER_RUN_ID $STEPLEDGER_STEP_ID '
                '$STEPLEDGER_ATTEMPT" > env.txt',
            ),
            env={"SL_OVERRIDE": "step"},
        )
        assert run_one(*p, spec).passed
    assert (tmp_path / "env.txt").read_text().split() == ["from-parent", "step", "r1", "s", "1"]


def test_tasks_and_tests_run_in_the_workdir(pool: StartedPool, tmp_path: Path) -> None:
    work = tmp_path / "sub dir"
    work.mkdir()
    spec = make_spec(
        work, tasks=("pwd > where.txt",), acceptance_tests=('test "$(pwd)" = "$PWD"', "test -f where.txt")
    )
    assert run_one(*pool, spec).passed
    assert (work / "where.txt").read_text().strip() == str(work)


def test_acceptance_tests_all_run_and_any_failure_fails(pool: StartedPool, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, acceptance_tests=("true", "exit 4", "touch ran-third"))
    result = run_one(*pool, spec)
    assert not result.passed and result.reason == "acceptance" and result.exit_code == 4
    assert [(a["command"], a["exit_code"], a["passed"]) for a in result.acceptance] == [
        ("true", 0, True),
        ("exit 4", 4, False),
        ("touch ran-third", 0, True),
    ]
    assert (tmp_path / "ran-third").exists()
    assert all(a["duration_s"] >= 0 for a in result.acceptance)


def test_acceptance_tests_do_not_run_when_the_tool_fails(pool: StartedPool, tmp_path: Path) -> None:
    result = run_one(*pool, make_spec(tmp_path, tasks=("false",), acceptance_tests=("touch t",)))
    assert result.reason == "exit_code" and result.acceptance == []
    assert not (tmp_path / "t").exists()


def test_outputs_file_becomes_outputs(pool: StartedPool, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, tasks=("""echo '{"version": "1.2", "n": 3}' > "$STEPLEDGER_OUTPUTS" """,))
    result = run_one(*pool, spec)
    assert result.passed and result.outputs == {"version": "1.2", "n": 3}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_malformed_outputs_file_fails_with_a_clear_message(
    pool: StartedPool, tmp_path: Path, content: str
) -> None:
    spec = make_spec(tmp_path, tasks=(f"""printf '%s' '{content}' > "$STEPLEDGER_OUTPUTS" """,))
    result = run_one(*pool, spec)
    assert not result.passed and result.reason == "error"
    assert "STEPLEDGER_OUTPUTS" in Path(files.log_path(str(tmp_path / "run"), "s", 1)).read_text()


def test_python_tool_calls_the_function_with_env_and_cwd(pool: StartedPool, tmp_path: Path) -> None:
    (tmp_path / "sl_steps_a.py").write_text(PY_MODULE)
    spec = make_spec(tmp_path, tool="python", tasks=("sl_steps_a:ok", "sl_steps_a:env"), env={"V": "step-v"})
    result = run_one(*pool, spec)
    assert result.passed, result.output_excerpt
    assert result.outputs == {"x": 1, "v": "step-v", "cwd": str(tmp_path), "step": "s"}
    assert "hello from python" in Path(files.log_path(str(tmp_path / "run"), "s", 1)).read_text()
    # The step's env is restored afterwards: the same worker does not leak it into the next attempt.
    for attempt in (2, 3):
        again = run_one(
            *pool, make_spec(tmp_path, tool="python", tasks=("sl_steps_a:leaked",), attempt=attempt)
        )
        assert again.outputs == {"v": None}


def test_python_tool_arguments_and_exit(pool: StartedPool, tmp_path: Path) -> None:
    (tmp_path / "sl_steps_b.py").write_text(PY_MODULE)
    result = run_one(*pool, make_spec(tmp_path, tool="python", tasks=("sl_steps_b:args one 'two words'",)))
    assert result.outputs == {"args": ["one", "two words"]}
    result = run_one(*pool, make_spec(tmp_path, "exit", tool="python", tasks=("sl_steps_b:leave 5",)))
    assert result.reason == "exit_code" and result.exit_code == 5
    result = run_one(*pool, make_spec(tmp_path, "exit0", tool="python", tasks=("sl_steps_b:leave 0",)))
    assert result.passed


def test_python_exception_fails_with_the_traceback_in_the_log(pool: StartedPool, tmp_path: Path) -> None:
    (tmp_path / "sl_steps_c.py").write_text(PY_MODULE)
    first = run_one(*pool, make_spec(tmp_path, tool="python", tasks=("sl_steps_c:boom",)))
    assert not first.passed and first.reason == "error"
    log = Path(files.log_path(str(tmp_path / "run"), "s", 1)).read_text()
    assert "Traceback" in log and "ValueError: bad input" in log
    second = run_one(*pool, make_spec(tmp_path, tool="python", tasks=("sl_steps_c:boom",), attempt=2))
    assert second.error_signature == first.error_signature  # "the same error" across attempts
    missing = run_one(*pool, make_spec(tmp_path, "m", tool="python", tasks=("no_such_module_xyz:f",)))
    assert missing.reason == "error" and "ModuleNotFoundError" in missing.output_excerpt


def test_profile_tool_runs_the_fake_aider_with_task_and_files(pool: StartedPool, tmp_path: Path) -> None:
    command = (sys.executable, str(FIXTURES / "fake_aider.py"), "--yes", "--message", "{task}", "{files}")
    spec = make_spec(
        tmp_path,
        "step-01",
        tool="aider",
        tasks=("Create math utils", "Add divide"),
        files_scope=("examples/math_utils.py", "examples/more.py"),
        profile_command=command,
        acceptance_tests=("test -f examples/math_utils.py",),
    )
    result = run_one(*pool, spec)
    assert result.passed, result.output_excerpt
    assert "Create math utils\nAdd divide" in result.output_excerpt  # one invocation, tasks joined
    assert (tmp_path / "examples/more.py").read_text() == "# written by fake-aider: Create math utils\n"


def test_profile_per_task_and_empty_files(pool: StartedPool, tmp_path: Path) -> None:
    command = (
        sys.executable,
        str(FIXTURES / "fake_aider.py"),
        "--message",
        "{step_id}#{attempt}: {task}",
        "{files}",
    )
    spec = make_spec(tmp_path, tool="aider", tasks=("a", "b"), profile_command=command, profile_per_task=True)
    result = run_one(*pool, spec)
    assert result.passed
    assert result.output_excerpt.count("fake-aider message: s#1: ") == 2
    fail = make_spec(tmp_path, "f", tool="aider", tasks=("FAIL",), profile_command=command)
    assert run_one(*pool, fail).exit_code == 3


def test_a_program_on_path_gets_the_task_as_its_argument(pool: StartedPool, tmp_path: Path) -> None:
    result = run_one(*pool, make_spec(tmp_path, tool="echo", tasks=("hello there",)))
    assert result.passed and "hello there" in result.output_excerpt
    missing = run_one(*pool, make_spec(tmp_path, "m", tool="no-such-tool-xyz", tasks=("x",)))
    assert not missing.passed and missing.reason == "error" and "cannot start" in missing.output_excerpt


def test_result_round_trips_through_json() -> None:
    result = AttemptResult(
        "r",
        "s",
        2,
        False,
        "acceptance",
        1,
        "sig",
        "out",
        1.0,
        2.5,
        [{"command": "c", "exit_code": 1, "passed": False, "duration_s": 0.1}],
        {"k": [1]},
        42,
    )
    assert AttemptResult.from_json(result.to_json()) == result
    assert AttemptResult.from_dict({**result.to_dict(), "future_field": 1}) == result


def test_file_names_are_safe_and_distinct() -> None:
    assert files.safe_name("step-01.ok_x") == "step-01.ok_x"
    names = {files.safe_name(s) for s in ("a/b", "a_b", "a b", "../x", ".x", "", "é")}
    assert len(names) == 7
    for name in names:
        assert "/" not in name and not name.startswith(".") and name
    assert files.log_path("/r", "a/b", 3) == f"/r/{files.safe_name('a/b')}.3.log"


def test_error_signature_ignores_pids_paths_numbers_and_timestamps() -> None:
    one = files.error_signature(
        "exit_code", 1, "at 12:01:02 pid 4411 failed in /tmp/x1/a.py 0xdeadbeef\nexit 1 in 0.52s"
    )
    two = files.error_signature(
        "exit_code", 1, "at 13:44:10 pid 98 failed in /var/y/b.py 0xcafebabe\nexit 1 in 3.10s"
    )
    assert one == two
    assert one != files.error_signature(
        "exit_code", 2, "at 12:01:02 pid 4411 failed in /tmp/x1/a.py 0xdeadbeef"
    )
    assert one != files.error_signature("exit_code", 1, "a different message")


def test_run_dir_is_created(pool: StartedPool, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, run_dir=str(tmp_path / "deep" / "runs" / "r1"))
    assert run_one(*pool, spec).passed
    assert wait_for_attempt(str(tmp_path / "deep" / "runs" / "r1"), "s", 1, timeout=10)  # file written
    assert os.path.exists(files.result_path(str(tmp_path / "deep" / "runs" / "r1"), "s", 1))
    lock = json.loads(Path(files.lock_path(str(tmp_path / "deep/runs/r1"), "s", 1)).read_text())
    assert lock["host"] == os.uname().nodename and len(lock["pgids"]) == 1
