"""`--shell-stub`: the workstream with each step's task replaced by a stub of about its duration.

The orchestration (dependencies, groups, retries, the saga, the pool) stays as written; only what
the steps do changes: a `shell` task that writes its start line to the side-effect log, sleeps
for the step's duration and writes its end line. Acceptance tests become a short sleep (so that a
kill can land in them) and compensations a sleep too. A stub always passes, so a workstream whose
real steps would fail is checked on its passing path.

The stub's shell text is made of numbers and fixed words only: nothing from the workstream file
(step ids, tasks) becomes shell code; the step's id reaches the stub as `$STEPLEDGER_STEP_ID`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepledger.engine.workstream.model import Workstream
from stepledger.engine.workstream.reading import read_document

from .side_effects import SIDE_EFFECT_VARIABLE

DEFAULT_STUB_SECONDS = 0.5
ACCEPTANCE_STUB = "sleep 0.2"
COMPENSATION_STUB = "sleep 0.05"


def stub_durations(
    workstream: Workstream, measured: dict[str, float], setting: float | None
) -> dict[str, float]:
    """Each step's stub seconds: the setting if given, else the median of earlier runs, else the
    step's `estimated_duration`, else DEFAULT_STUB_SECONDS."""
    out = {}
    for step in workstream.steps:
        if setting is not None:
            seconds = setting
        elif step.id in measured:
            seconds = measured[step.id]
        elif step.estimated_duration is not None:
            seconds = step.estimated_duration
        else:
            seconds = DEFAULT_STUB_SECONDS
        out[step.id] = round(max(0.0, seconds), 3)
    return out


def stub_task(seconds: float) -> str:
    """The shell task of a stub: a start line, `seconds` of sleep, an end line."""
    fields = '"$STEPLEDGER_STEP_ID" "$STEPLEDGER_ATTEMPT" "$(date +%s.%N)"'
    line = f'printf "%s {{}} %s %s\\n" {fields} >> "${SIDE_EFFECT_VARIABLE}"'
    return f"{line.format('start')}; sleep {seconds:.3f}; {line.format('end')}"


def _step_objects(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if isinstance(data.get("steps"), list):
        yield from (s for s in data["steps"] if isinstance(s, dict))
    elif isinstance(data.get("phases"), list):
        for phase in data["phases"]:
            if isinstance(phase, dict) and isinstance(phase.get("steps"), list):
                yield from (s for s in phase["steps"] if isinstance(s, dict))
    else:
        yield data  # a file that is one step


def stub_document(file: Path, durations: dict[str, float]) -> dict[str, Any]:
    """The workstream at `file`, as data, with every step's work replaced by its stub."""
    data = read_document(file)
    for step in _step_objects(data):
        seconds = durations.get(str(step.get("id", "")), DEFAULT_STUB_SECONDS)
        step["tool"] = "shell"
        step["tasks"] = [stub_task(seconds)]
        if step.get("acceptance_tests"):
            step["acceptance_tests"] = [ACCEPTANCE_STUB]
        compensation = step.get("compensation")
        if isinstance(compensation, dict) and "action" in compensation:
            compensation["action"] = COMPENSATION_STUB
            compensation["tool"] = "shell"
    return data


def write_stub(file: Path, durations: dict[str, float], into: Path) -> Path:
    """Write the stubbed workstream next to an iteration's copy (0600) and return its path."""
    target = into / f"stubbed-{file.stem}.json"
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
        json.dump(stub_document(file, durations), f, indent=1)
    return target
