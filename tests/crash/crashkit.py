"""Helpers of the crash suite: real `stepledger` processes, real SIGKILL, a side-effect file as evidence.

Every step of a crash workstream appends `<step> start <attempt> <time>` and `<step> end <attempt>
<time>` lines to `side.log`; after a run is resumed to its end, `check_run` reads that file and the
log and asserts what the engine promises: every step passed, no attempt completed twice, the passed
attempt completed exactly once, no two attempts of a step overlapped, and `replay --verify` passes.

Waiting: the database and the side-effect file offer no notification a test process can block on,
so `wait_for` polls them with a deadline (20 ms apart); no test sleeps to synchronise.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stepledger.events.state import RunState, fold
from stepledger.store.connect import open_store

_SCRIPT = Path(sys.executable).with_name("stepledger")
STEPLEDGER = [str(_SCRIPT)] if _SCRIPT.exists() else [shutil.which("stepledger") or "stepledger"]
LEASE_SECONDS = "2"
PROCESS_TIMEOUT = 90.0
TAG_VARIABLE = "STEPLEDGER_TEST_RUN_TAG"
WORKER_MODULE = b"stepledger.engine.execution.worker"


def side_task(side: Path, seconds: float | str, before_end: str = "") -> str:
    """The shell task of a crash step: a start line, some work, an end line (the evidence)."""
    line = f'"$STEPLEDGER_STEP_ID {{}} $STEPLEDGER_ATTEMPT $(date +%s.%N)" >> {side}'
    return f"echo {line.format('start')}; sleep {seconds}; {before_end}echo {line.format('end')}"


@dataclass
class Spec:
    """One step of a crash workstream."""

    id: str
    requires: tuple[str, ...] = ()
    seconds: float | str = 0.1  # a number, or a shell expression giving one
    extra: dict[str, Any] = field(default_factory=dict)  # acceptance_tests, retry, circuit_breaker, ...
    before_end: str = ""  # shell run between the work and the end line (e.g. fail on attempt 1)


def diamond(seconds: float = 0.1) -> list[Spec]:
    """a → (b, c, d) → e → f: parallel and sequential boundaries in six steps."""
    return [
        Spec("a", (), seconds),
        Spec("b", ("a",), seconds),
        Spec("c", ("a",), seconds * 2),
        Spec("d", ("a",), seconds),
        Spec("e", ("b", "c", "d"), seconds),
        Spec("f", ("e",), seconds),
    ]


class CrashRun:
    """A workdir, a database URL and the `stepledger` processes run against them."""

    def __init__(self, workdir: Path, url: str, specs: list[Spec], max_workers: int = 3) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.side = workdir / "side.log"
        self.specs = specs
        self.ws_path = workdir / "ws.json"
        steps = []
        for spec in specs:
            steps.append({
                "id": spec.id, "tool": "shell", "depends_on": list(spec.requires),
                "tasks": [side_task(self.side, spec.seconds, spec.before_end)], **spec.extra,
            })  # fmt: skip
        body = {"id": "ws-crash", "execution": {"max_workers": max_workers}, "steps": steps}
        self.ws_path.write_text(json.dumps(body, indent=1))
        self.run_id = ""
        self.faults: dict[str, str] = {}  # fault variables for every process, e.g. a claim delay
        self.rounds = 0  # processes started (run + resumes)
        self.kills = 0  # processes that died by SIGKILL

    # --- processes --------------------------------------------------------------------------

    def env(self, kill_at: str | None) -> dict[str, str]:
        """The environment of a stepledger process, with a kill plan and faults if given."""
        env = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_KILL_AT"}
        env.update(STEPLEDGER_DB=self.url, STEPLEDGER_LEASE_SECONDS=LEASE_SECONDS)
        # Marks this run's processes (workers included), so that check() can wait for every
        # worker a killed orchestrator left behind before it reads the evidence.
        env[TAG_VARIABLE] = str(self.workdir)
        if kill_at:
            env["STEPLEDGER_KILL_AT"] = kill_at
        env.update(self.faults)
        return env

    def start(self, args: list[str], kill_at: str | None = None) -> subprocess.Popen[bytes]:
        """Start `stepledger ARGS` in the workdir; its output goes to a numbered file there."""
        self.rounds += 1
        out = open(self.workdir / f"out.{self.rounds}.txt", "wb")  # noqa: SIM115 - closed by finish()
        proc = subprocess.Popen(
            [*STEPLEDGER, *args], cwd=self.workdir, env=self.env(kill_at), stdout=out, stderr=out
        )
        proc.out = out  # type: ignore[attr-defined]
        return proc

    def finish(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for `proc`; count a SIGKILL; return its exit code."""
        code = proc.wait(timeout=PROCESS_TIMEOUT)
        proc.out.close()  # type: ignore[attr-defined]
        if code == -signal.SIGKILL:
            self.kills += 1
        return code

    def output(self, round_no: int | None = None) -> str:
        """The output of one process (default: the last)."""
        return (self.workdir / f"out.{round_no or self.rounds}.txt").read_text(errors="replace")

    def run(self, kill_at: str | None = None, kill_after: float | None = None) -> int:
        """`stepledger run`, killed by the plan at a fault point or by SIGKILL after `kill_after` s."""
        before = set(self.store_call(lambda s: s.run_ids()))  # soaks run many runs on one database
        proc = self.start(["run", str(self.ws_path)], kill_at)
        if kill_after is not None:
            self._kill_later(proc, kill_after)
        code = self.finish(proc)
        new = [i for i in self.store_call(lambda s: s.run_ids()) if i not in before]
        self.run_id = self.run_id or (new[-1] if new else "")  # "" if killed before it recorded the run
        return code

    def resume(self, kill_at: str | None = None, kill_after: float | None = None) -> int:
        """`stepledger resume RUN`, killed like `run` when asked."""
        proc = self.start(["resume", self.run_id], kill_at)
        if kill_after is not None:
            self._kill_later(proc, kill_after)
        return self.finish(proc)

    @staticmethod
    def _kill_later(proc: subprocess.Popen[bytes], delay: float) -> None:
        # The delay is the experiment's input (a random instant), not a wait for something to happen.
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)

    def resume_to_end(
        self, plans: Sequence[str | None] = (), kill_afters: Sequence[float | None] = ()
    ) -> int:
        """Resume until a resume exits 0 (the first ones may be killed by `plans`); return resumes."""
        for attempt in range(12):
            plan = plans[attempt] if attempt < len(plans) else None
            after = kill_afters[attempt] if attempt < len(kill_afters) else None
            code = self.resume(plan, after)
            if code == 0:
                return attempt + 1
            assert code == -signal.SIGKILL, f"resume exited {code}:\n{self.output()}"
        raise AssertionError(f"the run did not finish after 12 resumes:\n{self.output()}")

    # --- the log ----------------------------------------------------------------------------

    def find_run_id(self) -> str:
        """The id of the (only) run in the database; waits for it to be recorded."""
        ids: list[str] = []

        def recorded() -> bool:
            ids[:] = self.store_call(lambda s: s.run_ids())
            return bool(ids)

        wait_for(recorded, 30, "the run to be recorded")
        return ids[-1]

    def store_call(self, fn: Callable[[Any], Any]) -> Any:
        """Call `fn(store)` on a freshly opened store (closed afterwards)."""
        store = open_store(self.url)
        try:
            return fn(store)
        finally:
            store.close()

    def state(self) -> RunState:
        """The run folded from its log."""
        return self.store_call(lambda s: fold(self.run_id, s.read_run(self.run_id)))

    def events(self, type_name: str, step_id: str | None = None) -> list[Any]:
        """The run's events of one type (of one step)."""
        return self.store_call(
            lambda s: [
                e
                for e in s.read_run(self.run_id)
                if e.type == type_name and (step_id is None or e.step_id == step_id)
            ]
        )

    def wait_for_event(self, type_name: str, step_id: str | None = None, timeout: float = 30) -> Any:
        """The first event of that type (of that step), once it is in the log."""
        if not self.run_id:
            self.run_id = self.find_run_id()
        found: list[Any] = []

        def there() -> bool:
            found[:] = self.events(type_name, step_id)
            return bool(found)

        wait_for(there, timeout, f"{type_name} of {step_id or 'the run'}")
        return found[0]

    # --- the evidence ---------------------------------------------------------------------------

    def side_lines(self) -> dict[str, dict[int, dict[str, list[float]]]]:
        """step -> attempt -> {"start": [times], "end": [times]} from the side-effect file."""
        out: dict[str, dict[int, dict[str, list[float]]]] = {}
        text = self.side.read_text() if self.side.exists() else ""
        for line in text.splitlines():
            step, what, attempt, at = line.split()
            entry = out.setdefault(step, {}).setdefault(int(attempt), {"start": [], "end": []})
            entry[what].append(float(at))
        return out

    def workers(self) -> list[int]:
        """Pids of the worker processes of this run's orchestrators that are still alive."""
        marker = f"{TAG_VARIABLE}={self.workdir}".encode() + b"\0"
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if WORKER_MODULE not in f.read():
                        continue
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker not in f.read():
                        continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        continue  # exited, not yet reaped by whoever adopted it
            except OSError:
                continue
            found.append(int(entry))
        return found

    def await_workers(self, timeout: float = PROCESS_TIMEOUT) -> None:
        """Wait until every worker this run's orchestrators started has exited (orphans included)."""
        for pid in self.workers():
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
        left = self.workers()
        assert not left, f"workers still alive {timeout}s after the run ended: {left}"

    def check(self, reactor_only: bool = True) -> RunState:
        """Assert everything the engine promises about the finished run; return its state."""
        # A worker orphaned by a killed orchestrator may still hold a job: its evidence counts too.
        self.await_workers()
        run = self.state()
        assert run.status == "passed", f"run is {run.status}:\n{self.output()}"
        states = {
            sid: run.steps[sid].state if sid in run.steps else "pending" for sid in (s.id for s in self.specs)
        }
        assert set(states.values()) == {"passed"}, states
        lines = self.side_lines()
        for spec in self.specs:
            attempts = lines.get(spec.id, {})
            passed = run.steps[spec.id].attempt
            for attempt, seen in attempts.items():
                assert len(seen["start"]) <= 1 and len(seen["end"]) <= 1, (
                    f"{spec.id}.{attempt} ran twice: {seen}"
                )
                assert not seen["end"] or seen["start"], f"{spec.id}.{attempt} ended without starting"
            assert attempts.get(passed, {}).get("end"), f"{spec.id}: passed attempt {passed} never completed"
            completed = [a for a, seen in attempts.items() if seen["end"]]
            if reactor_only and not spec.before_end:
                # Only the orchestrator was killed: work is never thrown away, so it completed once.
                assert completed == [passed], f"{spec.id} completed in attempts {completed}, passed {passed}"
            spans = sorted((seen["start"][0], seen["end"][0] if seen["end"] else None, a)
                           for a, seen in attempts.items() if seen["start"])  # fmt: skip
            for (_, end1, a1), (start2, _, a2) in itertools.pairwise(spans):
                assert end1 is None or end1 <= start2, f"{spec.id}: attempts {a1} and {a2} overlapped"
        # The `replay --verify` command itself, in this process (a fresh interpreter per check
        # would double the suite's time on a busy machine).
        from typer.testing import CliRunner

        from stepledger.cli.app import app

        result = CliRunner().invoke(app, ["replay", self.run_id, "--verify", "--db", self.url])
        assert result.exit_code == 0, f"replay --verify failed:\n{result.output}"
        return run


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 20 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def count(tally: dict[str, int], run: CrashRun) -> None:
    """Add a verified iteration to the module's tally."""
    tally["iterations"] += 1
    tally["kills"] += run.kills
    tally["processes"] += run.rounds
    tally["verified"] += 1


def soak(request: pytest.FixtureRequest) -> bool:
    """Whether the session runs the long soak (`pytest tests/crash --soak`)."""
    return bool(request.config.getoption("--soak"))
