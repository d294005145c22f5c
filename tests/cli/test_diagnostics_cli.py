"""Diagnostics of a step that failed for good keep every attempt, the last one included, whatever
ended them (an exit code, a timeout, a Python exception): through the installed command line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from failure_scripts import STEPLEDGER, write_workstream

ATTEMPTS = 3


def test_every_failed_attempt_is_kept_the_last_one_included(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "broken.py").write_text("def boom():\n    raise RuntimeError('kaput')\n")
    write_workstream(tmp_path, {
        "id": "ws-diag", "circuit_breaker": {"max_attempts": ATTEMPTS},
        "retry": {"strategy": "fixed", "initial_delay": 0},
        "error_handling": {"on_failure": {"collect_diagnostics": True}},
        "steps": [
            {"id": "exits", "tool": "shell", "tasks": ["echo 'ERROR: no disk' >&2; exit 3"]},
            {"id": "hangs", "tool": "shell", "timeout": 0.5, "tasks": ["sleep 30"]},
            {"id": "raises", "tool": "python", "tasks": ["broken:boom"]},
        ],
    })  # fmt: skip
    env = {**os.environ, "STEPLEDGER_DB": sqlite_url}
    done = subprocess.run([STEPLEDGER, "run", "ws.json"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (run_dir,) = (tmp_path / ".stepledger" / "runs").iterdir()
    for step, reason in (("exits", "exit_code"), ("hangs", "timeout"), ("raises", "error")):
        folder = run_dir / "diagnostics" / step
        for attempt in range(1, ATTEMPTS + 1):
            assert (folder / f"attempt-{attempt}.log").is_file(), (step, attempt)
            result = json.loads((folder / f"attempt-{attempt}.result.json").read_text())
            assert (result["attempt"], result["reason"]) == (attempt, reason), (step, result)
        timings = json.loads((folder / "timings.json").read_text())
        assert [a["attempt"] for a in timings["attempts"]] == list(range(1, ATTEMPTS + 1)), step
        assert all(a["reason"] == reason and a["duration_s"] is not None for a in timings["attempts"]), step
        summary = (folder / "summary.txt").read_text()
        assert f"attempt {ATTEMPTS}: {reason}" in summary, summary
    assert "no disk" in (run_dir / "diagnostics" / "exits" / f"attempt-{ATTEMPTS}.log").read_text()
