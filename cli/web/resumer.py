"""Resuming a run from the page: a `stepledger resume RUN` process of its own, never an orchestrator
inside the web server (signals, its pool, a crash of either would be the other's)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading


class Resumer:
    """Starts `stepledger resume RUN` processes and remembers how those that failed ended."""

    def __init__(self, db: str | None, workdir: str) -> None:
        self.db, self.workdir = db, workdir
        self._failures: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, run_id: str) -> int:
        env = dict(os.environ)
        if self.db:
            env["STEPLEDGER_DB"] = self.db  # in the environment, not on a command line `ps` shows
        process = subprocess.Popen(
            [sys.executable, "-m", "stepledger.cli", "resume", run_id],
            cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._reap, args=(run_id, process), daemon=True).start()
        return process.pid

    def _reap(self, run_id: str, process: subprocess.Popen[str]) -> None:
        _, err = process.communicate()
        if process.returncode not in (0, 1):  # 1 is a run that failed: its page says so itself
            lines = [line for line in err.splitlines() if line.strip()]
            with self._lock:
                self._failures[run_id] = lines[-1] if lines else f"exit code {process.returncode}"

    def failure(self, run_id: str) -> str:
        """How the last resume started here ended, if it ended with an error."""
        with self._lock:
            return self._failures.get(run_id, "")
