"""Helpers of the chaos command's tests: the installed `stepledger chaos` run as a subprocess, and
small workstreams whose steps write the side-effect log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).with_name("stepledger")
STEPLEDGER = str(_SCRIPT) if _SCRIPT.exists() else shutil.which("stepledger") or "stepledger"
TIMEOUT = 300.0
CLAIM_RULE_OFF = {"STEPLEDGER_TEST_ONLY_CLAIM_RULE_OFF": "1"}
SIDE = '"${STEPLEDGER_SIDE_EFFECT_LOG:-/dev/null}"'
FIELDS = '"$STEPLEDGER_STEP_ID" "$STEPLEDGER_ATTEMPT" "$(date +%s.%N)"'


def side_task(seconds: float) -> str:
    """A step's shell task: its start line, some work, its end line (docs/chaos.md's pattern)."""
    start, end = (f"printf '%s {what} %s %s\\n' {FIELDS} >> {SIDE}" for what in ("start", "end"))
    return f"{start}; sleep {seconds}; {end}"


def project(root: Path, steps: list[dict[str, Any]], **top: Any) -> Path:
    """A working directory holding one workstream file `ws.json`; the file's path."""
    root.mkdir(parents=True, exist_ok=True)
    body = {"id": "ws-chaos-test", "execution": {"max_workers": 2}, "steps": steps, **top}
    path = root / "ws.json"
    path.write_text(json.dumps(body, indent=1))
    return path


def chain(seconds: float = 0.1) -> list[dict[str, Any]]:
    """a → (b, c): one dispatch of one job, then one of two."""
    return [
        {"id": "a", "tool": "shell", "tasks": [side_task(seconds)]},
        {"id": "b", "tool": "shell", "tasks": [side_task(seconds)], "depends_on": ["a"]},
        {"id": "c", "tool": "shell", "tasks": [side_task(seconds)], "depends_on": ["a"]},
    ]


def chaos(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`stepledger chaos ARGS` in `cwd` (the user's environment plus `env`)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("STEPLEDGER_")}
    full.update(env or {})
    return subprocess.run(
        [STEPLEDGER, "chaos", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=TIMEOUT
    )


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object `chaos --json` printed."""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line:\n{result.stdout}\n{result.stderr}"
    return dict(json.loads(lines[0]))


def replay_argv(command: str) -> list[str]:
    """A violation's replay command as an argv, `stepledger` being the installed script."""
    import shlex

    words = shlex.split(command)
    assert words[:2] == ["stepledger", "chaos"], command
    return words[2:]
