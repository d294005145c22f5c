"""The `${name}` placeholders of `error_handling` messages: which ones each handler fills, and filling.

A message is written by the engine at the moment its handler is due (engine/run/messages.py for a
step's handlers, engine/saga/rollback.py for the rollback's). `validate` warns about a placeholder
its handler does not fill, and the engine writes such a placeholder as `?`: a template is never
printed as it was written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
UNFILLED = "?"

# `${workstream_id}` is filled when the file is loaded (engine/workstream/building.py), in every handler.
_STEP = ("workstream_id", "run_id", "step_id", "attempt_number", "max_attempts")
_ROLLBACK = ("workstream_id", "run_id", "step_id", "completed_steps", "compensation_count")
FILLED: dict[str, tuple[str, ...]] = {
    "on_failure": _STEP,
    "on_retry": _STEP,
    "on_recovery": _STEP,
    "on_circuit_open": (*_STEP, "pause_duration"),
    "on_rollback_start": _ROLLBACK,
    "on_rollback_complete": _ROLLBACK,
    "on_rollback_failure": _ROLLBACK,
}


def unfilled(handler_name: str, text: str) -> list[str]:
    """The placeholders of `text` that handler `handler_name` does not fill, each once, in order."""
    known = FILLED.get(handler_name, ())
    names = (m.group(1) for m in PLACEHOLDER.finditer(text))
    return list(dict.fromkeys(name for name in names if name.strip() not in known))


def fill(text: str, values: Mapping[str, object]) -> str:
    """`text` with each `${name}` replaced by its value; a name without a value becomes `?`."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        return str(values[name]) if name in values else UNFILLED

    return PLACEHOLDER.sub(value, text)


def fill_known(text: str, values: Mapping[str, object]) -> str:
    """`text` with the placeholders named in `values` filled and every other one left as written."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        return str(values[name]) if name in values else match.group(0)

    return PLACEHOLDER.sub(value, text)
