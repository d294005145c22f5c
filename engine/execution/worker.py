"""A long-lived worker process: runs attempts one at a time for a WorkerPool.

Forked from the orchestrator (forking.py) or started as a new interpreter (pool.py), with two
pipes carrying the messages of `protocol.py`.

A spawned worker imports almost nothing (its start-up is the interpreter's). It is the leader of its
own process group and every child it starts gets a new group, so a terminal's Ctrl-C reaches only
the orchestrator; it is also the subreaper of whatever its attempts leave behind. It runs a job only
after claiming it (claim.py). When the orchestrator dies the worker finishes the running attempt, writes its
result file, and exits because its pipe reads end-of-file.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from stepledger.engine.execution import descendants, files, tools
from stepledger.engine.execution.attempt import Attempt
from stepledger.engine.execution.protocol import Channel


class Worker:
    """The worker's process-wide state: its channel and the file descriptors it keeps."""

    def __init__(self) -> None:
        # The pipes arrive as stdin/stdout; move them aside so a python task's prints cannot
        # corrupt the protocol, and point fd 0/1 at /dev/null between attempts.
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.channel = Channel(os.dup(0), os.dup(1))
        os.dup2(self.devnull, 0)
        os.dup2(self.devnull, 1)
        self.stderr_fd = os.dup(2)
        # An inherited "ignore" would disarm the python-task backstop alarm.
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        # Daemons an attempt leaves behind become ours, to be killed when it ends (descendants.py).
        descendants.become_subreaper()
        self.pid = os.getpid()
        self.start_time = files.proc_start_time(self.pid)
        self.host = os.uname().nodename
        self.known_dirs: set[str] = set()
        self.reported = False  # whether the running attempt's result has gone to the pool

    def serve(self) -> None:
        """Run attempts until the pool says stop or goes away."""
        channel = self.channel
        while True:
            msg = channel.receive()
            if msg is None or msg[0] == "stop":
                return
            if msg[0] == "run":
                self.run_one(msg[1])
                if channel.orphaned:
                    return
            # A "cancel" read here is for an attempt that already finished: nothing to do.

    def report(self, result: dict) -> None:
        """Send an attempt's result to the pool (once per attempt)."""
        self.reported = True
        self.channel.send(("result", result))

    def run_one(self, spec: dict) -> None:
        """Run one attempt; a bug in the worker itself becomes a failed result, not a dead worker."""
        self.reported = False
        try:
            Attempt(self, spec).run()
        except Exception as exc:
            if self.reported:
                return  # the result went out; only its file is missing, as after a kill
            now = time.time()
            self.report(
                {
                    "run_id": spec["run_id"],
                    "step_id": spec["step_id"],
                    "attempt": spec["attempt"],
                    "passed": False,
                    "reason": "error",
                    "exit_code": None,
                    "error_signature": f"error:None:worker {type(exc).__name__}",
                    "output_excerpt": f"stepledger worker error: {type(exc).__name__}: {exc}",
                    "started_at": now,
                    "finished_at": now,
                    "acceptance": [],
                    "outputs": {},
                    "worker_pid": self.pid,
                }
            )


def main(with_site: bool = True) -> None:
    """Entry point of the worker process (`with_site`: add `site` now, before the first attempt)."""
    worker = Worker()
    if with_site:
        tools.add_site()
    worker.serve()
    # Leave without the interpreter's tear-down: the pool waits for its workers to exit, and on a
    # busy machine their tear-downs lengthened the end of every run. Every attempt's files
    # were written and its result sent before the pool closed the pipe.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
