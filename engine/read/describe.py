"""Plain words for events: one line each, shared by orchestrator.log and the non-terminal output."""

from __future__ import annotations

import datetime as dt
import re

from stepledger.events import (
    AcceptanceTestsRecorded,
    BreakerOpened,
    CompensationFailed,
    CompensationPassed,
    CompensationStarted,
    RecordedEvent,
    RetryScheduled,
    RollbackFinished,
    RollbackStarted,
    RunBranchCreated,
    RunBranchMerged,
    RunCancelRequested,
    RunDrainRequested,
    RunFinished,
    RunResumed,
    RunStarted,
    StepBlocked,
    StepFailed,
    StepMarkedPassed,
    StepPassed,
    StepRetryRequested,
    StepSkipped,
    StepStarted,
    StepTripped,
    WorktreeCommitted,
    WorktreeCreated,
    WorktreeMergeConflicted,
    WorktreeMerged,
    WorktreeScopeViolated,
)
from stepledger.events.state import RunState
from stepledger.events.types import StepExpanded


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


REASON_WORDS = {  # a failure's reason -> its words with an exit code, and without one
    "exit_code": ("exit {code}", "non-zero exit"),
    "acceptance": ("acceptance test failed (exit {code})", "acceptance test failed"),
    "timeout": ("timed out", "timed out"),
    "cancelled": ("cancelled", "cancelled"),
    "interrupted": ("interrupted", "interrupted"),
    "lost_worker": ("worker lost", "worker lost"),
    "error": ("error (exit {code})", "error"),
}


def failure_words(reason: str | None, exit_code: int | None) -> str:
    """`exit 3`, `timed out`, `acceptance test failed (exit 1)`: how an attempt ended, said once."""
    if not reason:
        return "failed"
    with_code, without = REASON_WORDS.get(reason, (reason, reason))
    return with_code.format(code=exit_code) if exit_code is not None else without


def plural(count: int, word: str, words: str = "") -> str:
    """`1 step`, `3 steps`, `1 dependency`, `2 dependencies`."""
    return f"{count} {word if count == 1 else words or word + 's'}"


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
        case RunStarted.type_name:
            return f"run {event.run_id} started: workstream {p['workstream_id']} in {p['workdir']}"
        case RunResumed.type_name if p.get("to_fleet"):
            return f"run {event.run_id} handed to the fleet by {p.get('user') or '?'} on {p['host']}"
        case RunResumed.type_name:
            return f"run {event.run_id} resumed by pid {p['pid']} on {p['host']}"
        case RunCancelRequested.type_name:
            return f"cancel requested by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case RunDrainRequested.type_name:
            how = f" ({p['reason']})" if p.get("reason") else ""
            return f"drain requested by {p['by']}{how}: no new step starts, the running ones finish"
        case RunFinished.type_name:
            return f"run {event.run_id} finished: {p['outcome']}"
        case StepStarted.type_name:
            attempt = f" (attempt {p['attempt']})" if p["attempt"] > 1 else ""
            return f"→ [{sid}] Starting...{attempt}"
        case StepPassed.type_name:
            took = format_duration(p["finished_at"] - p["started_at"])
            return f"✓ [{sid}] Complete ({took}{_ran_on(p)})" + (
                " — recovered after a restart" if p.get("recovered") else ""
            )
        case StepFailed.type_name:
            took = format_duration(p["finished_at"] - p["started_at"])
            line = last_error_line(p.get("output_excerpt") or "")
            tail = f": {line}" if line else ""
            words = failure_words(p["reason"], p.get("exit_code"))
            return f"✗ [{sid}] Failed after {took}{_ran_on(p)} ({words}){tail}"
        case RetryScheduled.type_name:
            return f"↻ [{sid}] Retry {p['next_attempt']} in {format_duration(p['delay_s'])}"
        case BreakerOpened.type_name:
            return f"⏸ [{sid}] Circuit breaker open ({p['reason']}); one trial after the cool-down"
        case StepTripped.type_name:
            return f"✗ [{sid}] Circuit breaker tripped ({p['reason']}): the step failed for good"
        case StepBlocked.type_name:
            return f"⊘ [{sid}] Blocked: depends on {p['blocked_by']}, which failed"
        case StepSkipped.type_name:
            return f"↷ [{sid}] Skipped by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case StepMarkedPassed.type_name:
            return f"✓ [{sid}] Marked passed by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case StepExpanded.type_name:
            ids, source = p["ids"], p["source"]
            shown = ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]}"
            return f"⑂ [{sid}] Expanded into {plural(len(ids), 'step')} ({shown}): one per item of {source}"
        case StepRetryRequested.type_name:
            return f"↻ [{sid}] Retry requested by {p['by']}" + (f": {p['reason']}" if p.get("reason") else "")
        case RollbackStarted.type_name:
            if not p["compensations"]:
                return "↺ Nothing to roll back: no completed step has a compensation"
            order = "in parallel" if p.get("order") == "parallel" else "in reverse order"
            steps = ", ".join(p["compensations"])
            return f"↺ Rolling back {plural(len(p['compensations']), 'completed step')} {order}: {steps}"
        case CompensationStarted.type_name:
            return f"↺ [{p['step_id']}] Compensating (attempt {p['attempt']}): {p['action'][:120]}"
        case CompensationPassed.type_name:
            took = format_duration(p["finished_at"] - p["started_at"])
            return f"✓ [{p['step_id']}] Compensated ({took})"
        case CompensationFailed.type_name:
            line = last_error_line(p.get("output_excerpt") or "")
            final = " — giving up" if p.get("final") else ""
            ended = failure_words(p["reason"], p.get("exit_code"))
            return f"✗ [{p['step_id']}] Compensation failed ({ended}){final}" + (f": {line}" if line else "")
        case RollbackFinished.type_name:
            return f"↺ Rollback finished: {p['outcome']}"
        case AcceptanceTestsRecorded.type_name:
            results = p["results"]
            passed = sum(1 for r in results if r["passed"])
            return f"  [{sid}] acceptance tests {passed}/{len(results)} passed"
    return _describe_git(event)


def _ran_on(payload: dict) -> str:
    """` on HOST (worker NAME)` for an attempt a fleet worker ran; "" for the run's own pool."""
    if not payload.get("worker_host"):
        return ""
    return f" on {payload['worker_host']} (worker {payload.get('worker') or '?'})"


def _describe_git(event: RecordedEvent) -> str | None:
    """Lines for the events of git isolation (docs/worktrees.md): branches and commits, short."""
    p, sid = event.payload, event.step_id
    match event.type:
        case RunBranchCreated.type_name:
            return f"⎇ run branch {p['branch']} from {p['base_commit'][:10]}"
        case WorktreeCreated.type_name:
            return f"⎇ [{sid}] worktree on {p['branch']} from {p['base_commit'][:10]}"
        case WorktreeCommitted.type_name:
            return (
                f"⎇ [{sid}] committed {p['commit'][:10]} on {p['branch']} ({plural(len(p['files']), 'file')})"
            )
        case WorktreeMerged.type_name:
            return f"⎇ [{sid}] merged {p['branch']} into {p['into']} ({p['merge_commit'][:10]})"
        case WorktreeMergeConflicted.type_name:
            others = f" with {', '.join(p['conflicting_steps'])}" if p.get("conflicting_steps") else ""
            return f"✗ [{sid}] merge conflict in {', '.join(p['files'][:5])}{others}"
        case WorktreeScopeViolated.type_name:
            return f"! [{sid}] changed files outside its files_scope: {', '.join(p['files'][:5])}"
        case RunBranchMerged.type_name:
            return f"⎇ run branch into {p['into']}: {p['how'].replace('_', ' ')}"
    return None
