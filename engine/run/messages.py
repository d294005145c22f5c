"""The `error_handling.on_*` messages: their placeholders filled in, at the moment they are due."""

from __future__ import annotations

from collections.abc import Mapping

from ..workstream.model import Message, Step
from ..workstream.placeholders import fill

DEFAULT_TEXT = {
    "on_retry": "Retrying ${step_id} (attempt ${attempt_number}/${max_attempts})",
    "on_recovery": "${step_id} recovered after ${attempt_number} attempts",
    "on_circuit_open": "Circuit breaker of ${step_id} opened after ${attempt_number} attempts",
    "on_failure": "${step_id} failed for good after ${attempt_number} attempts",
}


def render(text: str, values: Mapping[str, object]) -> str:
    """`text` with each `${name}` replaced by its value (a name without one becomes `?`)."""
    return fill(text, values)


def handler_line(handler: Message | None, text: str, values: Mapping[str, object] | None) -> str:
    """`text` (filled in, unless `values` is None) after the handler's log level when not `info`."""
    level = handler.log_level if handler is not None else "info"
    prefix = f"{level.upper()}: " if level and level != "info" else ""
    return prefix + (text if values is None else render(text, values))


def message_line(
    handler_name: str, handler: Message | None, step: Step, attempt: int, run_id: str
) -> str | None:
    """The line a handler asks for at this moment, or None when the workstream asks for no message."""
    if handler is None:
        return None
    text = handler.message or DEFAULT_TEXT.get(handler_name)
    if not text:
        return None
    values: dict[str, object] = {
        "run_id": run_id,
        "step_id": step.id,
        "attempt_number": attempt,
        "max_attempts": step.circuit_breaker.max_attempts,
    }
    # An open breaker pauses for its cooldown: that is the pause a message can name.
    pause = (
        handler.pause_duration
        if handler.pause_duration is not None
        else step.circuit_breaker.cooldown_seconds
    )
    values["pause_duration"] = f"{pause:g}"
    return handler_line(handler, text, values)
