"""The `error_handling.on_*` messages: their placeholders filled in, at the moment they are due."""

from __future__ import annotations

import re

from ..workstream.model import Message, Step

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
DEFAULT_TEXT = {
    "on_retry": "Retrying ${step_id} (attempt ${attempt_number}/${max_attempts})",
    "on_recovery": "${step_id} recovered after ${attempt_number} attempts",
    "on_circuit_open": "Circuit breaker of ${step_id} opened after ${attempt_number} attempts",
    "on_failure": "${step_id} failed for good after ${attempt_number} attempts",
}


def render(text: str, values: dict[str, object]) -> str:
    """`text` with each `${name}` replaced by its value (unknown names are left as they are)."""
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), text)


def message_line(handler_name: str, handler: Message | None, step: Step, attempt: int) -> str | None:
    """The line a handler asks for at this moment, or None when the workstream asks for no message."""
    if handler is None:
        return None
    text = handler.message or DEFAULT_TEXT.get(handler_name)
    if not text:
        return None
    values: dict[str, object] = {
        "step_id": step.id,
        "attempt_number": attempt,
        "max_attempts": step.circuit_breaker.max_attempts,
        "pause_duration": handler.pause_duration if handler.pause_duration is not None else "",
    }
    level = handler.log_level.upper() if handler.log_level and handler.log_level != "info" else ""
    return f"{level + ': ' if level else ''}{render(text, values)}"
