"""`run --detach`, and runs whose orchestrator died: what status, runs, logs and cancel say and do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stepledger.events.state import fold
from stepledger.store.connect import open_store

COMMAND = [sys.executable, "-m", "stepledger"]
DEADLINE_S = 60


def stepledger(*args: str, cwd: Path, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def write_gated(folder: Path) -> None:
    gate = folder / "go"
    wait = f"while [ ! -e {gate} ]; do sleep 0.02; done"  # until the test opens the gate
    task = f"echo $$ > {folder / 'a.pid'}; touch {folder / 'a.started'}; {wait}"
    (folder / "ws.json").write_text(json.dumps({"id": "ws-detach", "steps": [
        {"id": "a", "tool": "shell", "tasks": [task]},
        {"id": "b", "tool": "shell", "tasks": ["echo b-done"], "depends_on": ["a"]},
    ]}))  # fmt: skip


def events_of(folder: Path, run_id: str) -> list:
    store = open_store(f"sqlite:///{folder / '.stepledger' / 'ledger.db'}", create=False)
    try:
        return list(store.read_run(run_id))
    finally:
        store.close()


def await_path(path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def await_exit(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        assert time.monotonic() < deadline, f"pid {pid} is still alive"
        time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def detach(folder: Path) -> dict:
    done = stepledger("run", "ws.json", "--detach", "--json", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_a_detached_run_returns_at_once_and_is_followed_to_its_end(tmp_path: Path) -> None:
    write_gated(tmp_path)
    started = detach(tmp_path)  # returns while step a still waits for the gate
    run_id = started["run_id"]
    assert not (tmp_path / "go").exists()
    # Its own session: no terminal of ours can send it SIGHUP or Ctrl-C.
    assert os.getsid(started["pid"]) == started["pid"]
    assert Path(started["output"]).parent == tmp_path / ".stepledger" / "runs" / run_id
    status = json.loads(stepledger("status", run_id, "--json", cwd=tmp_path).stdout)
    assert status["status"] == "running" and status["orchestrator"] == "alive"
    follower = subprocess.Popen([*COMMAND, "logs", run_id, "--follow"], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    await_path(tmp_path / "a.started")
    (tmp_path / "go").touch()
    out, err = follower.communicate(timeout=DEADLINE_S)  # ends by itself when the run ends
    assert follower.returncode == 0, err
    assert "✓ [b] Complete" in out and f"run {run_id} finished: passed" in out
    assert fold(run_id, events_of(tmp_path, run_id)).status == "passed"


def test_a_detached_run_is_cancelled_like_any_other(tmp_path: Path) -> None:
    write_gated(tmp_path)
    started = detach(tmp_path)
    await_path(tmp_path / "a.started")
    cancelled = stepledger("cancel", "latest", "--reason", "enough", cwd=tmp_path)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout, cancelled.stderr
    await_exit(started["pid"])
    events = events_of(tmp_path, started["run_id"])
    assert fold(started["run_id"], events).status == "cancelled"
    assert [e.payload["reason"] for e in events if e.type == "step.failed"] == ["cancelled"]


def test_bad_input_with_detach_is_one_line_and_exit_2_with_nothing_started(tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text('{"id": "x", "steps": [{"id": "a", "tool": "shell", "tasks": 3}]}')
    done = stepledger("run", "ws.json", "--detach", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / ".stepledger").exists()


def test_a_run_whose_orchestrator_died_says_so_and_cancel_leaves_nothing_running(tmp_path: Path) -> None:
    write_gated(tmp_path)
    started = detach(tmp_path)
    run_id = started["run_id"]
    await_path(tmp_path / "a.started")
    os.kill(started["pid"], signal.SIGKILL)
    await_exit(started["pid"])
    shown = f"running (orchestrator gone — resume {run_id})"
    status = stepledger("status", run_id, "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["shown_status"] == shown
    assert json.loads(status.stdout)["orchestrator"] == "gone"
    runs = [json.loads(line) for line in stepledger("runs", "--json", cwd=tmp_path).stdout.splitlines()]
    assert [r["shown_status"] for r in runs] == [shown]
    table = stepledger("status", cwd=tmp_path).stdout
    assert "orchestrator gone" in table
    follow = stepledger("logs", run_id, "--follow", cwd=tmp_path)  # nobody will write: it ends
    assert follow.returncode == 0 and "orchestrator gone" in follow.stderr
    cancelled = stepledger("cancel", run_id[:-2], cwd=tmp_path)  # a prefix names it
    assert cancelled.returncode == 0 and "stopped what it left running: a" in cancelled.stdout
    events = events_of(tmp_path, run_id)
    run = fold(run_id, events)
    assert run.status == "cancelled"
    assert [s for s, step in run.steps.items() if step.state == "running"] == []
    assert run.steps["a"].state == "failed"
    assert not (tmp_path / "go").exists()
    # The step's own shell was killed: it would otherwise wait for the gate for ever.
    await_exit(int((tmp_path / "a.pid").read_text()))


def test_a_detached_run_takes_parameters_by_a_file_only_its_user_reads(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    task = f'echo "$WHO $N" > {tmp_path / "said"}; while [ ! -e {gate} ]; do sleep 0.02; done'
    (tmp_path / "ws.json").write_text(json.dumps({
        "id": "ws-params", "parameters": {"who": {"type": "string"}, "n": {"type": "integer", "default": 1}},
        "steps": [{"id": "a", "tool": "shell", "env": {"WHO": "${params.who}", "N": "${params.n}"},
                   "tasks": [task]}],
    }))  # fmt: skip
    (tmp_path / "more.json").write_text(json.dumps({"n": 7}))
    done = stepledger("run", "ws.json", "--detach", "--json", "--param", "who=s3cr3t-ish value",
                      "--params-file", "more.json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    started = json.loads(done.stdout)
    run_dir = tmp_path / ".stepledger" / "runs" / started["run_id"]
    # Not on the background process's command line (`ps` shows it to anyone), and the file that
    # carried them is gone once the run has recorded them.
    cmdline = Path(f"/proc/{started['pid']}/cmdline").read_bytes().decode()
    assert "s3cr3t-ish" not in cmdline and "--params-file" in cmdline
    assert not (run_dir / "params.json").exists()
    await_path(tmp_path / "said")
    gate.touch()
    await_exit(started["pid"])
    assert (tmp_path / "said").read_text().strip() == "s3cr3t-ish value 7"
    run = fold(started["run_id"], events_of(tmp_path, started["run_id"]))
    assert run.status == "passed" and run.workstream["params"] == {"who": "s3cr3t-ish value", "n": 7}


def test_detach_refuses_what_run_refuses_in_the_foreground(tmp_path: Path) -> None:
    step = {"id": "a", "tool": "shell", "tasks": ["true"]}
    (tmp_path / "ws.json").write_text(json.dumps({"id": "x", "steps": [step]}))
    for extra, said in (
        (["--on-workers"], "PostgreSQL"),  # the default log is SQLite: no fleet shares it
        (["--no-takeover"], "--no-takeover"),
        (["--param", "nope=1"], "nope"),  # a parameter the workstream does not declare
    ):
        done = stepledger("run", "ws.json", "--detach", *extra, cwd=tmp_path)
        assert done.returncode == 2, (extra, done.stdout, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert said in line and "Traceback" not in done.stderr, (extra, line)
    runs = tmp_path / ".stepledger" / "runs"
    assert not runs.exists() or not any(runs.iterdir())
