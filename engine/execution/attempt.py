"""One attempt inside a worker process: its lock and log, its children, its tools and tests.

The worker (worker.py) runs one Attempt at a time. An attempt takes the attempt's lock file (held
while any process of the attempt lives, which is how recovery tells a live attempt from a dead
one), runs the tool's commands in process groups of their own, then the acceptance tests, reports
the result to the pool and writes it to the result file.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time

from stepledger.engine.execution import claim, descendants, files
from stepledger.engine.execution.tools import SHELL, commands, run_python

TYPE_CHECKING = False  # as typing's, without importing typing: a worker starts on a run's critical path
if TYPE_CHECKING:
    from typing import Protocol

    from stepledger.engine.execution.protocol import Channel

    class Worker(Protocol):
        """What an attempt uses of the worker process that runs it (worker.py)."""

        pid: int
        host: str
        start_time: int | None
        channel: Channel
        devnull: int
        stderr_fd: int
        known_dirs: set[str]

        def report(self, result: dict) -> None: ...


EXCERPT_BYTES = 2048
# An attempt's log keeps at most this many bytes: its first and last halves, with a line saying
# what was cut between them (0: no cap). A runaway tool must not fill the disk of every later run.
LOG_CAP_DEFAULT = 64 << 20
TRIM_CHUNK = 1 << 20
ALARM_GRACE = 2.0  # seconds past a python task's deadline before the worker ends itself


def log_cap() -> int:
    """The cap on an attempt's log in bytes, from STEPLEDGER_MAX_LOG_BYTES (0: none)."""
    try:
        return max(0, int(os.environ.get("STEPLEDGER_MAX_LOG_BYTES") or LOG_CAP_DEFAULT))
    except ValueError:
        return LOG_CAP_DEFAULT


class Attempt:
    """The running state of one attempt inside the worker."""

    def __init__(self, worker: Worker, spec: dict) -> None:
        self.worker = worker
        self.spec = spec
        self.key = (spec["run_id"], spec["step_id"], spec["attempt"])
        self.workdir = spec["workdir"] or os.getcwd()
        timeout = spec["timeout"]
        self.deadline = time.monotonic() + timeout if timeout else None
        self.kill_reason: str | None = None  # set once by a timeout or a cancel message
        self.pgids: list[list[int | None]] = []  # [pgid, start time] of every child group started
        self.child_env: dict[str, str] | None = None
        run_dir = spec["run_dir"] or os.path.join(self.workdir, ".stepledger", "runs", spec["run_id"])
        self.run_dir = run_dir
        self.base = files.attempt_base(run_dir, spec["step_id"], spec["attempt"])
        self.outputs_file = self.base + ".outputs.json"
        self.step_env = {
            **spec["env"],
            "STEPLEDGER_RUN_ID": spec["run_id"],
            "STEPLEDGER_STEP_ID": spec["step_id"],
            "STEPLEDGER_ATTEMPT": str(spec["attempt"]),
            "STEPLEDGER_OUTPUTS": self.outputs_file,
        }
        self.log_fd = -1
        self.lock_fd = -1
        self.spawn_failed = False  # the tool's program could not be started at all
        self.children: list[subprocess.Popen] = []

    # -- files ---------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        """Append a line of our own (a header or a diagnostic) to the attempt's log."""
        os.write(self.log_fd, text.encode("utf-8", "replace"))

    def write_lock_content(self) -> None:
        """Record who runs the attempt in its lock file, for recovery after a crash."""
        w = self.worker
        content = json.dumps(
            {
                "claimed": True,
                "host": w.host,
                "worker_pid": w.pid,
                "worker_start": w.start_time,
                "kind": self.spec["tool"] if self.spec["tool"] in ("shell", "python") else "command",
                "run_id": self.key[0],
                "step_id": self.key[1],
                "attempt": self.key[2],
                "pgids": self.pgids,
            }
        ).encode()
        os.pwrite(self.lock_fd, content, 0)
        os.ftruncate(self.lock_fd, len(content))

    def take_lock(self) -> bool:
        """Take the attempt's exclusive flock; False if another process holds it."""
        fd = claim.take(files.lock_path(self.run_dir, self.key[1], self.key[2]))
        if fd is None:
            return False
        self.lock_fd = fd
        return True

    def cap_log(self) -> None:
        """Cut the middle out of a log longer than the cap (only once nothing of the attempt writes to it)."""
        cap = log_cap()
        size = os.fstat(self.log_fd).st_size
        if not cap or size <= cap + TRIM_CHUNK:
            return  # a log just over the cap is left whole: cutting it would save little
        half = cap // 2
        tail_from = size - half
        marker = (
            f"\n[stepledger: {tail_from - half:,} bytes of output cut here; the log keeps its first and"
            f" last {half:,} bytes (STEPLEDGER_MAX_LOG_BYTES={cap})]\n"
        ).encode()
        # Its own descriptor: the log's is O_APPEND, where Linux ignores pwrite's offset.
        fd = os.open(self.base + ".log", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, marker, half)
            src, dst = tail_from, half + len(marker)  # dst < src: the copy never overtakes its source
            while src < size:
                chunk = os.pread(self.log_fd, min(TRIM_CHUNK, size - src), src)
                if not chunk:
                    break
                os.pwrite(fd, chunk, dst)
                src += len(chunk)
                dst += len(chunk)
            os.ftruncate(fd, dst)
        finally:
            os.close(fd)

    # -- children ------------------------------------------------------------------------------

    def kill(self, reason: str) -> None:
        """Kill every process group of the attempt; the first reason given is the one reported."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self.kill_groups()

    def kill_groups(self) -> None:
        """SIGKILL each process group the attempt started (stragglers included)."""
        # Safe against pid reuse: every group leader stays an unreaped zombie until the attempt
        # ends (see wait), and the kernel never reuses a pid that is still taken.
        for pgid, _start in self.pgids:
            with contextlib.suppress(OSError):  # already gone
                os.killpg(pgid, signal.SIGKILL)  # type: ignore[arg-type]

    def reap(self) -> None:
        """Collect the attempt's exited group leaders (after kill_groups)."""
        for proc in self.children:
            proc.wait()

    def run_child(self, argv: list[str], display: str) -> int:
        """Run one command in a new process group, output to the log; its exit code (negative: signal)."""
        self.log(f"$ {display}\n")
        if self.deadline is not None and self.kill_reason is None and time.monotonic() >= self.deadline:
            self.kill_reason = "timeout"
        if self.kill_reason is not None:
            self.log(f"not started: attempt {self.kill_reason}\n")
            return -signal.SIGKILL
        if self.child_env is None:
            self.child_env = {**os.environ, **self.step_env}
        began = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=self.child_env,
                stdin=self.worker.devnull,
                stdout=self.log_fd,
                stderr=self.log_fd,
                pass_fds=(self.lock_fd,),  # the lock stays held while any process of the attempt lives
                process_group=0,
            )
        except OSError as exc:
            self.log(f"stepledger: cannot start {argv[0]!r}: {exc}\nexit 127 in 0.00s\n")
            self.spawn_failed = True
            return 127
        self.pgids.append([proc.pid, files.proc_start_time(proc.pid)])
        self.write_lock_content()
        if self.spec["tool"] == "python" and len(self.pgids) == 1:
            # The pool times a python function itself; from the first child on, this worker does.
            self.worker.channel.send(("spawned", proc.pid))
        self.children.append(proc)
        code = self.wait(proc)
        self.log(f"exit {code} in {time.monotonic() - began:.2f}s\n")
        return code

    def wait(self, proc: subprocess.Popen) -> int:
        """Wait for the child while listening for cancel messages and the deadline."""
        channel = self.worker.channel
        pidfd = os.pidfd_open(proc.pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not channel.orphaned:
                poller.register(channel.rfd, select.POLLIN)
            while True:
                timeout_ms = None
                if self.deadline is not None and self.kill_reason is None:
                    timeout_ms = max(0.0, (self.deadline - time.monotonic()) * 1000)
                events = poller.poll(timeout_ms)
                if not events:
                    self.kill("timeout")
                    continue
                for fd, _mask in events:
                    if fd == pidfd:
                        # Read the exit status but leave the child a zombie: its pid, and so its
                        # process group id, cannot be reused before the attempt kills the group.
                        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                        if info is None:  # not possible after the pidfd said it exited
                            return proc.wait()
                        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                    msg = channel.receive()
                    if msg is None:
                        poller.unregister(channel.rfd)  # orphaned: keep running, report to the file
                    elif msg[0] == "cancel" and tuple(msg[1]) == self.key:
                        self.kill(msg[2])
        finally:
            os.close(pidfd)

    # -- tools ---------------------------------------------------------------------------------

    def run_tool(self) -> tuple[int, str | None]:
        """Run the tool's tasks in order; (exit code, failure reason or None)."""
        spec = self.spec
        tool = spec["tool"]
        if tool == "python":
            if self.deadline is not None:
                # The pool kills a worker whose function overruns; this alarm (default action:
                # terminate) is the backstop for when the pool itself is gone.
                signal.setitimer(signal.ITIMER_REAL, self.deadline - time.monotonic() + ALARM_GRACE)
            try:
                for task in spec["tasks"]:
                    code, reason = run_python(self, task)
                    if reason:
                        return code, reason
            finally:
                if self.deadline is not None:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            return 0, None
        for argv, display in commands(self.spec):
            code = self.run_child(argv, display)
            if code != 0:
                return code, "error" if self.spawn_failed else "exit_code"
        return 0, None

    def read_outputs(self) -> str | None:
        """Merge the STEPLEDGER_OUTPUTS file into outputs; an error message if it is malformed."""
        try:
            with open(self.outputs_file, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return f"STEPLEDGER_OUTPUTS file {self.outputs_file} is not valid JSON: {exc}"
        if not isinstance(data, dict):
            kind = type(data).__name__
            return f"STEPLEDGER_OUTPUTS file {self.outputs_file} must hold a JSON object, not {kind}"
        self.outputs.update(data)
        return None

    # -- the whole attempt -----------------------------------------------------------------------

    def run(self) -> None:
        """Run tool and acceptance tests, report the result, then write the result file."""
        started = time.time()
        self.outputs: dict = {}
        acceptance: list[dict] = []
        worker = self.worker
        if self.run_dir not in worker.known_dirs:
            os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
            worker.known_dirs.add(self.run_dir)
        self.log_fd = os.open(self.base + ".log", os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            if claim.FAULT_CLAIM_DELAY:
                time.sleep(claim.FAULT_CLAIM_DELAY)
            owner = self.take_lock()
            refused = None
            if owner:
                refused = claim.refusal(self.run_dir, *self.key[1:], worker.channel.pool_gone())
            if refused:
                # Never run: recovery has decided this attempt or will (see claim.py). Its
                # verdict is not ours to write; the log says why nothing ran.
                self.log(f"stepledger: attempt not started: {refused}\n")
                settled = self.settled_result()
                if settled is not None:
                    worker.report(settled)
                return
            try:
                if not owner:
                    # Someone else runs this very attempt: report, but leave its files to that owner.
                    self.log("stepledger: this attempt is already running in another process\n")
                    result = self.result(started, None, "error", acceptance)
                else:
                    self.write_lock_content()  # the claim: from here on the attempt is ours
                    result = self.outcome(started, acceptance)
            finally:
                # Stragglers (background processes a task left behind, daemons that left its
                # process groups) end with the attempt; a SIGKILLed process runs no more code, so
                # the next attempt cannot overlap with them.
                self.kill_groups()
                self.reap()
                descendants.kill_all(self.worker.pid)
            # Nothing of the attempt writes to the log any more; the excerpt in the result is its tail.
            self.cap_log()
            # The pool hears of the result first, so the reactor records it and moves on while the
            # file is written (creating a file is slow on a busy disk). The lock is held
            # until the file is complete and recovery reads a result only once the lock is free, so
            # an orchestrator that dies meanwhile finds the file when it starts again.
            worker.report(result)
            if owner:
                # Written in place, not through a temporary file and a rename (one more journaled
                # operation per attempt): a file cut short by a kill does not parse, which reads as
                # "no result".
                files.write_file(self.base + ".result.json", json.dumps(result).encode())
        finally:
            if self.lock_fd >= 0:
                os.close(self.lock_fd)  # released once the last child holding it has exited too
            os.close(self.log_fd)

    def settled_result(self) -> dict | None:
        """The verdict already on file for this attempt (a refused job reports it, if anyone listens)."""
        try:
            with open(files.result_path(self.run_dir, *self.key[1:]), "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def outcome(self, started: float, acceptance: list[dict]) -> dict:
        """Run the tool, read its outputs, run the acceptance tests: the attempt's result."""
        code: int | None
        code, reason = self.run_tool()
        if reason is None:
            problem = self.read_outputs()
            if problem:
                self.log(f"stepledger: {problem}\n")
                code, reason = 1, "error"
        if reason is None:
            code, reason = self.run_acceptance(acceptance)
        if self.kill_reason is not None:
            reason = self.kill_reason
        return self.result(started, code, reason, acceptance)

    def run_acceptance(self, acceptance: list[dict]) -> tuple[int | None, str | None]:
        """Run every acceptance test; (first failing exit code, "acceptance") if any fails."""
        first_failure: int | None = None
        for command in self.spec["acceptance_tests"]:
            began = time.monotonic()
            code = self.run_child([SHELL, "-c", command], command)
            acceptance.append(
                {
                    "command": command,
                    "exit_code": code,
                    "passed": code == 0,
                    "duration_s": round(time.monotonic() - began, 6),
                }
            )
            if code != 0 and first_failure is None:
                first_failure = code
            if self.kill_reason is not None:
                break
        if first_failure is not None:
            return first_failure, "acceptance"
        return 0, None

    def result(self, started: float, code: int | None, reason: str | None, acceptance: list) -> dict:
        """The AttemptResult fields as a dict."""
        size = os.fstat(self.log_fd).st_size
        tail = ""
        if size:
            start = max(0, size - EXCERPT_BYTES)
            tail = os.pread(self.log_fd, size - start, start).decode("utf-8", "replace")
        return {
            "run_id": self.key[0],
            "step_id": self.key[1],
            "attempt": self.key[2],
            "passed": reason is None,
            "reason": reason,
            "exit_code": code,
            "error_signature": "" if reason is None else files.error_signature(reason, code, tail),
            "output_excerpt": tail,
            "started_at": started,
            "finished_at": time.time(),
            "acceptance": acceptance,
            "outputs": self.outputs,
            "worker_pid": self.worker.pid,
        }
