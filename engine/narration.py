"""Plain words for events: one line each, shared by orchestrator.log and the non-terminal output."""

from __future__ import annotations

import datetime as dt
import re

from stepledger.events import RecordedEvent
from stepledger.events.state import RunState


def format_duration(seconds: float) -> str:
    """`2m 52s`, `3.1s` or `12ms`: short, and precise where it matters."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s"


_OWN_LINES = re.compile(r"^(\$ |exit -?\d+ in )")


def format_time(at: float | None, missing: str = "") -> str:
    """A wall-clock time as `2026-11-28 14:02:11` (`missing` when there is none)."""
    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at else missing


def last_error_line(excerpt: str, width: int = 160) -> str:
    """The last line of a failure's output that the tool wrote (not the log's own `$ cmd` lines)."""
    for line in reversed(excerpt.strip().splitlines()):
        if line.strip() and not _OWN_LINES.match(line):
            return line.strip()[:width]
    return ""


def describe(event: RecordedEvent, run: RunState) -> str | None:
    """One line for `event`, or None when it is not worth a line of its own."""
    p = event.payload
    sid = event.step_id
    match event.type:
        case "run.started":
            return f"run {event.run_id} started: workstream {p['workstream_id']} in {p['workdir']}"
        case "run.resumed":
            return f"run {event.run_id} resumed by pid {p['pid']} on {p['host']}"
        case "run.cancel_requested":
            return f"cancel requested by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case "run.finished":
            return f"run {event.run_id} finished: {p['outcome']}"
        case "step.started":
            attempt = f" (attempt {p['attempt']})" if p["attempt"] > 1 else ""
            return f"→ [{sid}] Starting...{attempt}"
        case "step.passed":
            took = format_duration(p["finished_at"] - p["started_at"])
            return f"✓ [{sid}] Complete ({took})" + (
                " — recovered after a restart" if p.get("recovered") else ""
            )
        case "step.failed":
            took = format_duration(p["finished_at"] - p["started_at"])
            detail = f"exit {p['exit_code']}" if p.get("exit_code") is not None else p["reason"]
            line = last_error_line(p.get("output_excerpt") or "")
            tail = f": {line}" if line else ""
            return f"✗ [{sid}] Failed after {took} ({p['reason']}, {detail}){tail}"
        case "step.retry_scheduled":
            return f"↻ [{sid}] Retry {p['next_attempt']} in {format_duration(p['delay_s'])}"
        case "step.breaker_opened":
            return f"⏸ [{sid}] Circuit breaker open ({p['reason']}); one trial after the cool-down"
        case "step.tripped":
            return f"✗ [{sid}] Circuit breaker tripped ({p['reason']}): the step failed for good"
        case "step.blocked":
            return f"⊘ [{sid}] Blocked: depends on {p['blocked_by']}, which failed"
        case "step.skipped":
            return f"↷ [{sid}] Skipped by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case "step.marked_passed":
            return f"✓ [{sid}] Marked passed by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case "step.retry_requested":
            return f"↻ [{sid}] Retry requested by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case "rollback.started":
            order = "in parallel" if p.get("order") == "parallel" else "in reverse order"
            steps = ", ".join(p["compensations"])
            return f"↺ Rolling back {len(p['compensations'])} completed step(s) {order}: {steps}"
        case "compensation.started":
            return f"↺ [{p['step_id']}] Compensating (attempt {p['attempt']}): {p['action'][:120]}"
        case "compensation.passed":
            took = format_duration(p["finished_at"] - p["started_at"])
            return f"✓ [{p['step_id']}] Compensated ({took})"
        case "compensation.failed":
            line = last_error_line(p.get("output_excerpt") or "")
            final = " — giving up" if p.get("final") else ""
            return f"✗ [{p['step_id']}] Compensation failed ({p['reason']}){final}" + (
                f": {line}" if line else ""
            )
        case "rollback.finished":
            return f"↺ Rollback finished: {p['outcome']}"
        case "step.acceptance_tests_recorded":
            results = p["results"]
            passed = sum(1 for r in results if r["passed"])
            return f"  [{sid}] acceptance tests {passed}/{len(results)} passed"
    return None
