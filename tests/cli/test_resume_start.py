"""`stepledger resume` starts its workers before it imports the reactor (engine/session/resume_pool.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# `stepledger resume`, noting at each pool start whether the reactor's module was imported yet.
PROBE = """
import sys
import stepledger.engine.execution.pool as pool
start = pool.WorkerPool.start
def noted(self):
    if self._reader is None:
        print("pool started; reactor imported:", "stepledger.engine.run.reactor" in sys.modules, flush=True)
    start(self)
pool.WorkerPool.start = noted
sys.argv = ["stepledger", "resume"]
from stepledger.cli.app import main
main()
"""


def test_a_resume_boots_its_workers_while_it_imports_the_reactor_and_finishes_the_run(tmp_path: Path) -> None:
    # The first step kills its orchestrator (its worker's parent) with SIGKILL and passes itself.
    kill = "kill -9 $(cut -d' ' -f4 /proc/$PPID/stat)"
    after = {"id": "after", "tool": "shell", "tasks": ["echo done > after.txt"], "depends_on": ["die"]}
    steps = [{"id": "die", "tool": "shell", "tasks": [kill]}, after]
    (tmp_path / "ws.json").write_text(json.dumps({"id": "ws", "steps": steps}))
    env = {**os.environ, "STEPLEDGER_DB": ""}
    first = subprocess.run([sys.executable, "-m", "stepledger.cli", "run", "ws.json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert first.returncode == -9, first.stderr
    resumed = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("pool started;") == 1
    assert "pool started; reactor imported: False" in resumed.stdout
    assert "✓ All steps complete" in resumed.stdout
    assert (tmp_path / "after.txt").read_text() == "done\n"
