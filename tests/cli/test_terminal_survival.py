"""A run outlives its terminal: a closed pipe, a closed pseudo-terminal, Ctrl-C typed at it.

Each test drives the installed command as a subprocess, through a real pipe or a real
pseudo-terminal that is the run's controlling terminal (so Ctrl-C and hang-up come from the
terminal driver, as they do for a user). Steps wait for a file the test creates, so nothing here
depends on timing.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from stepledger.engine.session.stopping import pending_drain
from stepledger.events.state import fold
from stepledger.store.connect import open_store

COMMAND = [sys.executable, "-m", "stepledger"]
GATED = "while [ ! -e {gate} ]; do sleep 0.02; done"  # the step waits for the test's go-ahead
DEADLINE_S = 60


def write_ws(folder: Path, steps: list[dict]) -> Path:
    path = folder / "ws.json"
    path.write_text(json.dumps({"id": "ws-terminal", "steps": steps}))
    return path


def gated_steps(folder: Path) -> list[dict]:
    gate = folder / "go"
    return [
        {"id": "a", "tool": "shell", "tasks": [f"touch {folder / 'a.started'}; {GATED.format(gate=gate)}"]},
        {"id": "b", "tool": "shell", "tasks": ["echo b"], "depends_on": ["a"]},
    ]


def run_events(folder: Path) -> tuple[str, list]:
    store = open_store(f"sqlite:///{folder / '.stepledger' / 'ledger.db'}", create=False)
    try:
        run_id = store.run_ids()[-1]
        return run_id, list(store.read_run(run_id))
    finally:
        store.close()


def await_file(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():  # the step's own marker: it is running now
        assert proc.poll() is None, f"the run ended before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


class Terminal:
    """A pseudo-terminal that is the controlling terminal of the command it starts."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        # Wide enough that no line the test looks for is wrapped.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 300, 0, 0))

        def become_its_session() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: this terminal is ours

        self.proc = subprocess.Popen(
            args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=become_its_session,
        )  # fmt: skip
        os.close(slave)
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def read_until(self, text: str) -> str:
        """Read what the command prints until `text` shows (an event of the command, not a delay)."""
        deadline = time.monotonic() + DEADLINE_S
        while text.encode() not in self.seen:
            assert time.monotonic() < deadline, self.seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([self.master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the command closed the terminal's other side
                    chunk = b""
                assert chunk, (
                    f"the command ended without printing {text!r}: "
                    + self.seen.decode(errors="replace")[-2000:]
                )
                self.seen += chunk
        return self.seen.decode(errors="replace")

    def drain(self) -> None:
        """Keep reading until the command closes the terminal (so it never blocks on a full one)."""
        while True:
            ready, _, _ = select.select([self.master], [], [], 1.0)
            if not ready:
                if self.proc.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.seen += chunk

    def close(self) -> None:
        """Close the terminal, as a closed window or a dropped ssh session does (the driver hangs up)."""
        os.close(self.master)


def test_a_run_piped_into_a_reader_that_quits_goes_on_to_its_end(tmp_path: Path) -> None:
    # `stepledger run ws.json | head -2`: the reader takes two lines and goes away.
    write_ws(tmp_path, gated_steps(tmp_path))
    proc = subprocess.Popen([*COMMAND, "run", "ws.json"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    first = [proc.stdout.readline(), proc.stdout.readline()]
    assert first[0].startswith(b"run run-")
    await_file(tmp_path / "a.started", proc)
    proc.stdout.close()  # the pipe's reader is gone: every later line fails to be written
    (tmp_path / "go").touch()
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err  # the run's own exit code, not a broken pipe's
    assert b"Traceback" not in err
    run_id, events = run_events(tmp_path)
    assert fold(run_id, events).status == "passed"
    assert [e.step_id for e in events if e.type == "step.passed"] == ["a", "b"]
    log = (tmp_path / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()
    assert "✓ [b] Complete" in log and f"run {run_id} finished: passed" in log


def test_exit_codes_survive_a_closed_pipe(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"id": 3}')
    for args, code in ((["validate", "bad.json"], 2), (["schema"], 0), (["--help"], 0)):
        # The reader is gone before the command writes a byte (`| head -0`, `| true`).
        read, write = os.pipe()
        os.close(read)
        done = subprocess.run([*COMMAND, *args], cwd=tmp_path, stdout=write, stderr=write, timeout=DEADLINE_S)
        os.close(write)
        assert done.returncode == code, args


def test_closing_the_terminal_does_not_stop_the_run(tmp_path: Path) -> None:
    write_ws(tmp_path, gated_steps(tmp_path))
    terminal = Terminal([*COMMAND, "run", "ws.json"], tmp_path)
    await_file(tmp_path / "a.started", terminal.proc)
    terminal.read_until("[a] Starting")
    terminal.close()  # SIGHUP to the run; every later write to the terminal fails
    (tmp_path / "go").touch()
    assert terminal.proc.wait(timeout=DEADLINE_S) == 0
    run_id, events = run_events(tmp_path)
    assert fold(run_id, events).status == "passed"
    log = (tmp_path / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()
    assert "the terminal was closed; the run carries on" in log
    assert f"run {run_id} finished: passed" in log


def test_the_first_ctrl_c_lets_running_steps_finish_and_starts_nothing_new(tmp_path: Path) -> None:
    write_ws(tmp_path, gated_steps(tmp_path))
    terminal = Terminal([*COMMAND, "run", "ws.json"], tmp_path)
    await_file(tmp_path / "a.started", terminal.proc)
    terminal.read_until("[a] Starting")
    terminal.type(b"\x03")  # Ctrl-C, through the terminal driver: SIGINT to the foreground group
    shown = terminal.read_until("waiting for 1 running step to finish")
    assert "Ctrl-C: starting no new step" in shown
    (tmp_path / "go").touch()  # a finishes of its own accord, after the Ctrl-C
    terminal.drain()
    assert terminal.proc.wait(timeout=DEADLINE_S) == 130
    run_id, events = run_events(tmp_path)
    assert fold(run_id, events).status == "interrupted"
    assert [e.step_id for e in events if e.type == "step.passed"] == ["a"]  # it was not killed
    assert not [e for e in events if e.type == "step.failed"]
    assert not [e for e in events if e.type == "step.started" and e.step_id == "b"]  # nothing new
    # The drain is in the log, by whom, before the outcome of the step it waited for.
    [drain] = [e for e in events if e.type == "run.drain_requested"]
    assert drain.payload == {"by": getpass.getuser(), "reason": "Ctrl-C"}
    assert drain.position < next(e.position for e in events if e.type == "step.passed")
    assert pending_drain(e for e in events if e.step_id is None) is None  # the run.finished ended it
    log = (tmp_path / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()
    assert f"drain requested by {getpass.getuser()} (Ctrl-C)" in log
    resumed = subprocess.run([*COMMAND, "resume"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=DEADLINE_S)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming {run_id} (the newest unfinished run of this log)" in resumed.stdout
    _, events = run_events(tmp_path)
    assert [e.step_id for e in events if e.type == "step.passed"] == ["a", "b"]  # a not run again
    assert fold(run_id, events).status == "passed"
    assert [e.type for e in events].count("run.drain_requested") == 1  # the typed resume did not drain


def test_a_second_ctrl_c_kills_running_steps_and_records_them_interrupted(tmp_path: Path) -> None:
    write_ws(tmp_path, gated_steps(tmp_path))
    terminal = Terminal([*COMMAND, "run", "ws.json"], tmp_path)
    await_file(tmp_path / "a.started", terminal.proc)
    terminal.read_until("[a] Starting")
    terminal.type(b"\x03")
    terminal.read_until("waiting for 1 running step to finish")
    terminal.type(b"\x03")
    terminal.read_until("stopping 1 running step")
    terminal.drain()
    assert terminal.proc.wait(timeout=DEADLINE_S) == 130
    run_id, events = run_events(tmp_path)
    assert fold(run_id, events).status == "interrupted"
    assert [(e.step_id, e.payload["reason"]) for e in events if e.type == "step.failed"] == [
        ("a", "interrupted")
    ]


def test_following_events_ends_when_its_reader_goes_away(tmp_path: Path) -> None:
    # `stepledger events latest --follow | head -1`: the follower must not print into the void for ever.
    write_ws(tmp_path, gated_steps(tmp_path))
    run = subprocess.Popen([*COMMAND, "run", "ws.json"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    await_file(tmp_path / "a.started", run)
    follower = subprocess.Popen([*COMMAND, "events", "latest", "--follow", "--json"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert follower.stdout is not None
    first = json.loads(follower.stdout.readline())
    assert first["type"] == "run.started"
    follower.stdout.close()
    (tmp_path / "go").touch()  # new events arrive; the first write after them finds the reader gone
    assert run.wait(timeout=DEADLINE_S) == 0
    _, err = follower.communicate(timeout=DEADLINE_S)
    assert follower.returncode == 0 and b"Traceback" not in err


def test_ctrl_c_while_nothing_runs_stops_at_once(tmp_path: Path) -> None:
    # The only step waits out a long retry back-off: a drain has nothing to wait for.
    (tmp_path / "ws.json").write_text(json.dumps({
        "id": "ws-backoff", "circuit_breaker": {"max_attempts": 2},
        "retry": {"strategy": "fixed", "initial_delay": 3600},
        "steps": [{"id": "a", "tool": "shell", "tasks": ["exit 1"]}],
    }))  # fmt: skip
    terminal = Terminal([*COMMAND, "run", "ws.json"], tmp_path)
    terminal.read_until("[a] Retry 2 in")
    terminal.type(b"\x03")
    terminal.read_until("nothing is running, so the run stops now")
    terminal.drain()
    assert terminal.proc.wait(timeout=DEADLINE_S) == 130
    run_id, events = run_events(tmp_path)
    assert fold(run_id, events).status == "interrupted"
    assert [e.type for e in events if e.type == "step.started"] == ["step.started"]  # no second attempt
    assert [e.payload["reason"] for e in events if e.type == "run.drain_requested"] == ["Ctrl-C"]


def test_the_first_ctrl_c_counts_every_running_step(tmp_path: Path) -> None:
    gate = GATED.format(gate=tmp_path / "go")
    write_ws(tmp_path, [
        {"id": "a", "tool": "shell", "tasks": [f"touch {tmp_path / 'a.started'}; {gate}"]},
        {"id": "b", "tool": "shell", "tasks": [f"touch {tmp_path / 'b.started'}; {gate}"]},
        {"id": "c", "tool": "shell", "tasks": ["true"], "depends_on": ["a", "b"]},
    ])  # fmt: skip
    terminal = Terminal([*COMMAND, "run", "ws.json"], tmp_path)
    await_file(tmp_path / "a.started", terminal.proc)
    await_file(tmp_path / "b.started", terminal.proc)
    terminal.type(b"\x03")
    terminal.read_until("waiting for 2 running steps to finish")
    (tmp_path / "go").touch()
    terminal.drain()
    assert terminal.proc.wait(timeout=DEADLINE_S) == 130
    run_id, events = run_events(tmp_path)
    assert fold(run_id, events).status == "interrupted"
    assert sorted(e.step_id for e in events if e.type == "step.passed") == ["a", "b"]
    assert not [e for e in events if e.type == "step.started" and e.step_id == "c"]
