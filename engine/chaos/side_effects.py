"""The side-effect log: what the steps really executed, written by the steps themselves.

During a chaos run every `stepledger` process, and so every step, has `STEPLEDGER_SIDE_EFFECT_LOG`
naming a file. A step that wants its executions checked appends one line when it starts its work
and one when it is done (POSIX shell):

    printf '%s start %s %s\\n' "$STEPLEDGER_STEP_ID" "$STEPLEDGER_ATTEMPT" "$(date +%s.%N)" \\
        >> "${STEPLEDGER_SIDE_EFFECT_LOG:-/dev/null}"
    ... the step's work ...
    printf '%s end %s %s\\n' "$STEPLEDGER_STEP_ID" "$STEPLEDGER_ATTEMPT" "$(date +%s.%N)" \\
        >> "${STEPLEDGER_SIDE_EFFECT_LOG:-/dev/null}"

(`:-/dev/null`: the same step still runs outside a chaos run.)

The log is what happened; the event log is what stepledger believes happened. A step that writes
only start lines is still checked for running twice; the end lines add the overlap check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SIDE_EFFECT_VARIABLE = "STEPLEDGER_SIDE_EFFECT_LOG"


@dataclass
class Execution:
    """What the log says of one attempt of one step: its start and end times (each may repeat)."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)


@dataclass
class SideEffects:
    """step -> attempt -> Execution, and the lines that could not be read."""

    steps: dict[str, dict[int, Execution]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def executions(self, step_id: str) -> int:
        """How many times the step's work was done: its end lines, or its start lines if it writes no ends."""
        attempts = self.steps.get(step_id, {}).values()
        ends = sum(len(e.ends) for e in attempts)
        return ends if any(e.ends for e in attempts) else sum(len(e.starts) for e in attempts)


def read_side_effects(path: Path) -> SideEffects:
    """Parse the side-effect log at `path` (an absent file: nothing was written)."""
    found = SideEffects()
    text = path.read_text(errors="replace") if path.exists() else ""
    for line in text.splitlines():
        parts = line.rsplit(" ", 3)
        try:
            step, what, attempt, at = parts
            if what not in ("start", "end"):
                raise ValueError(what)
            execution = found.steps.setdefault(step, {}).setdefault(int(attempt), Execution())
            (execution.starts if what == "start" else execution.ends).append(float(at))
        except ValueError:
            found.unreadable.append(line[:200])
    return found
