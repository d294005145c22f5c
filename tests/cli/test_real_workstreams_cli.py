"""The seed's sibling workstreams, unedited (tests/workstreams/original/), through `validate` and `run`.

Each file is used as its authors wrote it. Its steps use the `aider` tool: a stand-in `aider` on
PATH writes the module each task names, so the files' own acceptance tests can pass; the saga's
compensations (`delete_account`, `refund`, `cancel_notification`) are stand-ins that note their call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ORIGINALS = Path(__file__).resolve().parents[1] / "workstreams" / "original"
FILES = sorted(p.name for p in ORIGINALS.glob("*.json"))

FAKE_AIDER = r'''#!PYTHON
"""A stand-in for Aider: writes the module each task names (FAKE_AIDER_FAILS: the one it fails on)."""
import os, re, sys
from pathlib import Path

MODULES = {
    "hello_world": "def main():\n    print('hello, world')\n\nif __name__ == '__main__':\n    main()\n",
    "math_utils": "def add(a, b):\n    return a + b\n",
    "string_utils": "def reverse(s):\n    return s[::-1]\n",
    "file_utils": "import pathlib\n\ndef ensure_dir(path):\n    pathlib.Path(path).mkdir(exist_ok=True)\n",
    "network_client": "class NetworkClient:\n    def request_with_retry(self, op):\n        return op()\n",
    "data_processor": "class DataProcessor:\n    pass\n",
    "data_validator": "class DataValidator:\n    pass\n",
    "data_reporter": "class Reporter:\n    pass\n",
    "user_service": "class UserService:\n    pass\n",
    "payment_service": "class PaymentService:\n    pass\n",
    "notification_service": "class NotificationService:\n    pass\n",
    "saga_coordinator": "class SagaCoordinator:\n    pass\n",
}
for name in dict.fromkeys(re.findall(r"examples/(\w+)\.py", " ".join(sys.argv[1:]))):
    if name == os.environ.get("FAKE_AIDER_FAILS"):
        sys.exit(f"aider: cannot write examples/{name}.py: API error")
    Path("examples").mkdir(exist_ok=True)
    Path(f"examples/{name}.py").write_text(MODULES[name])
'''


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A folder for PATH with `aider`, `python` and the saga's compensation commands."""
    folder = tmp_path / "bin"
    folder.mkdir()
    aider = folder / "aider"
    aider.write_text(FAKE_AIDER.replace("PYTHON", sys.executable, 1))
    aider.chmod(0o755)
    (folder / "python").symlink_to(sys.executable)  # the files' acceptance tests call `python`
    for command in ("delete_account", "refund", "cancel_notification"):
        script = folder / command
        script.write_text(f'#!/bin/sh\necho "{command} $STEPLEDGER_PARAMETERS" >> undo.log\n')
        script.chmod(0o755)
    return folder


def stepledger(*args: str, cwd: Path, path: Path | None = None, env: dict[str, str] | None = None):
    """The installed command line, run in `cwd` (with `path` first on PATH)."""
    full = {**os.environ, **(env or {})}
    if path is not None:
        full["PATH"] = f"{path}{os.pathsep}{full['PATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "stepledger.cli", *args], cwd=cwd, capture_output=True, text=True, env=full,
        timeout=120,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_originals_are_byte_exact_copies_of_the_seed_s_family() -> None:
    seed = Path("/work/shared/seeds/ws-example-02-parallel-execution.json")
    in_repo = Path(__file__).resolve().parents[1] / "workstreams" / "ws-example-02-parallel-execution.json"
    assert (ORIGINALS / "02_parallel_execution.json").read_bytes() == in_repo.read_bytes()
    if seed.exists():
        assert (ORIGINALS / "02_parallel_execution.json").read_bytes() == seed.read_bytes()
    assert FILES == [
        "01_simple_task.json",
        "02_parallel_execution.json",
        "03_error_handling.json",
        "04_multi_phase.json",
        "05_saga_pattern.json",
    ]


@pytest.mark.parametrize("name", FILES)
def test_validate_accepts_each_original(name: str, tmp_path: Path, tools: Path) -> None:
    done = stepledger("validate", str(ORIGINALS / name), cwd=tmp_path, path=tools)
    assert done.returncode == 0, done.stderr
    assert f"ok: {ORIGINALS / name} (" in done.stdout
    assert "error:" not in done.stderr


def test_validate_says_what_it_does_not_understand(tmp_path: Path, tools: Path) -> None:
    files = [str(ORIGINALS / name) for name in ("03_error_handling.json", "04_multi_phase.json",
                                                 "05_saga_pattern.json")]  # fmt: skip
    done = stepledger("validate", *files, cwd=tmp_path, path=tools)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    multi, saga = files[1], files[2]
    assert (
        f"warning: {multi}: circuit_breaker.per_phase: unknown field `per_phase` is ignored"
        " — did you mean `per_step`?"
    ) in lines
    assert any(
        line.startswith(f"note: {multi}: phases[1].resume_strategy: read but not acted on") for line in lines
    )
    for field in ("max_rollback_retries", "rollback_timeout"):
        assert any(f"warning: {saga}: rollback_strategy.{field}: unknown field" in line for line in lines)
    assert any(
        line.startswith(f"note: {saga}: error_handling.on_step_failure: read but not acted on")
        for line in lines
    )
    assert "log_level" not in done.stderr  # "ERROR", "WARNING", "INFO" are words it knows
    assert "compensation.action" not in done.stderr  # {"enabled": false} needs no action


def test_validate_strict_makes_unknown_fields_errors(tmp_path: Path, tools: Path) -> None:
    done = stepledger(
        "validate", "--strict", str(ORIGINALS / "04_multi_phase.json"), cwd=tmp_path, path=tools
    )
    assert done.returncode == 2
    assert (
        f"error: {ORIGINALS / '04_multi_phase.json'}: circuit_breaker.per_phase: unknown field `per_phase`"
        " — did you mean `per_step`?"
    ) in done.stderr.splitlines()
    # notes stay notes: strict is about fields it does not know, not about settings it does not act on
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: {ORIGINALS / '04_multi_phase.json'}: circuit_breaker.per_phase: unknown field `per_phase`"
        " — did you mean `per_step`?"
    ]
    assert "note: " in done.stderr


def test_the_workstream_can_ask_for_strictness(tmp_path: Path, tools: Path) -> None:
    data = json.loads((ORIGINALS / "04_multi_phase.json").read_text())
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({**data, "unknown_fields": "error"}))
    done = stepledger("validate", str(strict), cwd=tmp_path, path=tools)
    assert done.returncode == 2 and f"error: {strict}: circuit_breaker.per_phase" in done.stderr
    done = stepledger("run", str(strict), cwd=tmp_path, path=tools)
    assert done.returncode == 2 and f"{strict}: circuit_breaker.per_phase" in done.stderr
    assert not (tmp_path / ".stepledger" / "ledger.db").exists()  # nothing recorded


@pytest.mark.parametrize("name", FILES)
def test_run_each_original_to_success(name: str, tmp_path: Path, tools: Path) -> None:
    done = stepledger("run", str(ORIGINALS / name), cwd=tmp_path, path=tools)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ Workstream complete" in done.stdout
    assert (tmp_path / ".stepledger" / "ledger.db").exists()
    assert "${" not in done.stdout
    status = stepledger("status", "--json", cwd=tmp_path)
    report = json.loads(status.stdout)
    assert report["status"] == "passed" and all(s["state"] == "passed" for s in report["steps"])


def test_run_says_what_it_does_not_understand_once_on_stderr_before_the_run(
    tmp_path: Path, tools: Path
) -> None:
    done = stepledger("run", str(ORIGINALS / "04_multi_phase.json"), cwd=tmp_path, path=tools)
    assert done.returncode == 0, done.stderr
    warning = "circuit_breaker.per_phase: unknown field `per_phase` is ignored — did you mean `per_step`?"
    assert done.stderr.count(warning) == 1 and warning not in done.stdout
    assert done.stderr.splitlines()[0].startswith(("note: ", "warning: "))
    assert (
        f"note: {ORIGINALS / '04_multi_phase.json'}: state_transitions: read but not acted on" in done.stderr
    )


def test_the_saga_rolls_back_with_its_messages_filled_in(tmp_path: Path, tools: Path) -> None:
    done = stepledger(
        "run", str(ORIGINALS / "05_saga_pattern.json"), cwd=tmp_path, path=tools,
        env={"FAKE_AIDER_FAILS": "saga_coordinator"},
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "WARNING: SAGA rollback initiated for ws-example-05-saga-pattern" in out
    assert "SAGA rollback completed. 3 compensations executed." in out
    assert "${" not in out
    # the step that failed has {"enabled": false}: no compensation; the three others are undone in reverse
    undo = (tmp_path / "undo.log").read_text().splitlines()
    assert [line.split()[0] for line in undo] == ["cancel_notification", "refund", "delete_account"]
    assert json.loads(undo[2].split(" ", 1)[1]) == {"reason": "saga_rollback", "user_id": ""}


def test_comment_keys_in_free_data_never_reach_a_step(tmp_path: Path) -> None:
    workstream = {
        "id": "ws-comments",
        "saga": {"enabled": True},
        "metadata": {"owner": "me", "_comment_owner": "who to ask"},
        "steps": [
            {
                "id": "a",
                "tool": "shell",
                "tasks": ["true"],
                "compensation": {
                    "action": "env | grep '^STEPLEDGER_PARAM' | sort > undo-env.txt",
                    "parameters": {
                        "user": "u1",
                        "_comment_user": "not data",
                        "extra": {"_comment": 1, "k": 2},
                    },
                },
            },
            {"id": "b", "tool": "shell", "tasks": ["exit 3"], "depends_on": ["a"]},
        ],
    }
    path = tmp_path / "comments.json"
    path.write_text(json.dumps(workstream))
    done = stepledger("run", str(path), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    seen = (tmp_path / "undo-env.txt").read_text()
    assert "STEPLEDGER_PARAM_USER=u1" in seen
    assert "COMMENT" not in seen.upper() and '"k": 2' in seen


def test_an_unfilled_placeholder_is_warned_about_and_never_printed(tmp_path: Path) -> None:
    workstream = {
        "id": "ws-placeholders",
        "retry": {"initial_delay": 0},
        "circuit_breaker": {"max_attempts": 2},
        "error_handling": {"on_retry": {"message": "again: ${step_id} of ${workstream_id} for ${ticket}"}},
        "steps": [{"id": "a", "tool": "shell", "tasks": ["exit 1"]}],
    }
    path = tmp_path / "placeholders.json"
    path.write_text(json.dumps(workstream))
    warning = "error_handling.on_retry.message: placeholder `${ticket}` is not filled in on_retry messages"
    done = stepledger("validate", str(path), cwd=tmp_path)
    assert done.returncode == 0 and f"warning: {path}: {warning}" in done.stderr
    done = stepledger("run", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count(warning) == 1
    assert "again: a of ws-placeholders for ?" in done.stdout and "${" not in done.stdout
