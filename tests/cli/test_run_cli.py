"""`stepledger run` end to end, as a user runs it: the installed command, real processes, real logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepledger.events.state import fold
from stepledger.store.connect import open_store

# The in-repository copy of the seed file (tests/workstreams/), byte for byte the user's.
SEED = Path(__file__).resolve().parents[1] / "workstreams" / "ws-example-02-parallel-execution.json"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def stepledger(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    """Run the command line in `cwd`; return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "stepledger.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )  # fmt: skip


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def events_of(url: str) -> tuple[str, list]:
    store = open_store(url)
    try:
        run_id = store.run_ids()[-1]
        return run_id, list(store.read_run(run_id))
    finally:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def test_the_seed_workstream_runs_in_parallel_through_a_tool_profile(tmp_path: Path, db_url: str) -> None:
    shutil.copy(SEED, tmp_path / "ws.json")  # the user's file, unchanged
    coder = FIXTURES / "fake_coder.py"
    command = f'["{sys.executable}", "{coder}", "--message", "{{task}}", "{{files}}"]'
    write(tmp_path / "stepledger.toml", f"[tools.aider]\ncommand = {command}\n")
    env = {"FAKE_CODER_BARRIER": str(tmp_path / "barrier"), "FAKE_CODER_PARTIES": "3"}
    done = stepledger("run", "ws.json", "--db", db_url, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for expected in ("✓ Loading workstream: ws-example-02-parallel-execution", "✓ Validating schema",
                     "✓ Checking file scope conflicts", "(3 steps, 0 dependencies)",
                     "max_workers=3", "✓ All steps complete", "✓ Running acceptance tests (3/3)",
                     "→ step-01-math-utils: PASS", "✓ Workstream complete in", "time saved)"):  # fmt: skip
        assert expected in out, out
    assert "\x1b[" not in out  # not a terminal: plain lines, no escape codes
    assert out.splitlines()[0].startswith("run run-")
    run_id, events = events_of(db_url)
    attempts = [e.payload for e in events if e.type == "step.passed"]
    assert len(attempts) == 3
    # Parallelism from the recorded events: every attempt started before any of them finished.
    assert max(a["started_at"] for a in attempts) < min(a["finished_at"] for a in attempts)
    assert (tmp_path / "examples" / "math_utils.py").is_file()
    log = tmp_path / ".stepledger" / "runs" / run_id / "orchestrator.log"
    assert "Complete" in log.read_text()


def test_a_failing_step_exits_1_and_names_what_failed_and_what_was_blocked(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws-fail", "steps": [
        {"id": "good", "tool": "shell", "tasks": ["true"]},
        {"id": "bad", "tool": "shell", "tasks": ["echo 'disk on fire' >&2; exit 7"]},
        {"id": "after", "tool": "shell", "tasks": ["true"], "depends_on": ["bad"]},
    ]})  # fmt: skip
    done = stepledger("run", "ws.json", cwd=tmp_path)
    assert done.returncode == 1
    assert "bad: failed (exit 7) after 1 attempt" in done.stdout
    assert "disk on fire" in done.stdout
    assert "after: blocked by bad" in done.stdout
    status = json.loads(stepledger("status", "--json", cwd=tmp_path).stdout)
    assert {s["step_id"]: s["state"] for s in status["steps"]} == {
        "good": "passed", "bad": "tripped", "after": "blocked"}  # fmt: skip


def test_invalid_file_exits_2_without_traceback(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [{"id": "a", "tool": "shell", "depends_on": ["nope"]}]})
    done = stepledger("run", "ws.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "nope" in done.stderr
    assert not (tmp_path / ".stepledger" / "ledger.db").exists()  # nothing was recorded


def test_json_output_is_one_event_per_line(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"]}]})
    done = stepledger("run", "ws.json", "--json", cwd=tmp_path)
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["type"] for line in lines] == [
        "run.started", "step.ready", "step.started", "step.passed", "run.finished"]  # fmt: skip
    assert lines[-1]["payload"]["outcome"] == "passed"


def test_env_is_merged_and_cwd_honoured(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [{
        "id": "a", "tool": "shell", "cwd": "sub", "env": {"STEP_VAR": "from-step"},
        "tasks": ['echo "$STEP_VAR $INHERITED $(basename $PWD)" > seen.txt'],
    }]})  # fmt: skip
    done = stepledger("run", "ws.json", cwd=tmp_path, env={"INHERITED": "from-parent"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "sub" / "seen.txt").read_text().split() == ["from-step", "from-parent", "sub"]


def test_timeout_kills_the_step_and_its_children(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "execution": {"timeout_per_step": 1}, "steps": [{
        "id": "slow", "tool": "shell", "tasks": ["sleep 300 & echo $! > child.pid; wait"]}]})  # fmt: skip
    done = stepledger("run", "ws.json", cwd=tmp_path)
    assert done.returncode == 1
    assert "slow: failed (timed out)" in done.stdout
    child = int((tmp_path / "child.pid").read_text())
    assert not running(child)


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a killed one may linger as a zombie until its reaper runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_ctrl_c_twice_records_interrupted_and_resume_finishes(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [
        {"id": "a", "tool": "shell", "tasks": ["touch started; sleep 30"]},
        {"id": "b", "tool": "shell", "tasks": ["true"], "depends_on": ["a"]},
    ]})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "stepledger.cli", "run", "ws.json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    deadline = time.time() + 20
    while not (tmp_path / "started").exists():  # the step's own marker: it is running now
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the first drains: it says so, and kills nothing
    seen: list[str] = []
    while not any("waiting for 1 running step to finish" in line for line in seen):
        line = proc.stdout.readline()
        assert line, "".join(seen)
        seen.append(line)
    proc.send_signal(signal.SIGINT)  # the second stops the running step
    out, _ = proc.communicate(timeout=20)
    out = "".join(seen) + out
    assert proc.returncode == 130, out
    assert "stepledger resume" in out
    url = f"sqlite:///{tmp_path / '.stepledger' / 'ledger.db'}"
    run_id, events = events_of(url)
    failed = [e.payload for e in events if e.type == "step.failed"]
    assert [f["reason"] for f in failed] == ["interrupted"]
    assert fold(run_id, events).status == "interrupted"
    (tmp_path / "ws.json").write_text(json.dumps({"id": "ws", "steps": [
        {"id": "a", "tool": "shell", "tasks": ["true"]},
        {"id": "b", "tool": "shell", "tasks": ["true"], "depends_on": ["a"]}]}))  # fmt: skip
    resumed = stepledger("resume", run_id, "--use-current-file", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert fold(run_id, events_of(url)[1]).status == "passed"


def test_status_runs_and_logs(tmp_path: Path) -> None:
    write(
        tmp_path / "ws.json", {"id": "ws", "steps": [{"id": "a", "tool": "shell", "tasks": ["echo hello"]}]}
    )
    assert stepledger("run", "ws.json", cwd=tmp_path).returncode == 0
    runs = [json.loads(line) for line in stepledger("runs", "--json", cwd=tmp_path).stdout.splitlines()]
    assert [r["status"] for r in runs] == ["passed"]
    run_id = runs[0]["run_id"]
    assert "hello" in stepledger("logs", run_id, "a", cwd=tmp_path).stdout
    assert "Starting" in stepledger("logs", run_id, cwd=tmp_path).stdout
    missing = stepledger("logs", run_id, "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no step 'nope'" in missing.stderr


def test_plan_uses_durations_measured_by_earlier_runs(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws-hist", "steps": [
        {"id": "a", "tool": "shell", "tasks": ["sleep 0.3"]},
        {"id": "b", "tool": "shell", "tasks": ["true"], "depends_on": ["a"]}]})  # fmt: skip
    before = json.loads(stepledger("plan", "ws.json", "--json", cwd=tmp_path).stdout)
    assert before["duration_sources"]["history"] == 0
    assert not (tmp_path / ".stepledger").exists()  # planning never creates a log
    assert stepledger("run", "ws.json", cwd=tmp_path).returncode == 0
    after = json.loads(stepledger("plan", "ws.json", "--json", cwd=tmp_path).stdout)
    assert after["duration_sources"]["history"] == 2
    assert after["durations"]["a"] >= 0.3 > after["durations"]["b"]
