"""Audit questions answered in SQL: timeline, failures, actions and run summaries."""

from __future__ import annotations

import itertools
from typing import Any

from stepledger.engine.errors import RunNotFound
from stepledger.events import StepFailed, StepPassed, StepStarted, WorktreeCommitted, WorktreeCreated, loads
from stepledger.store.port import AuditQueries, EventStore
from stepledger.store.port import AuditReader as Reader

from .filters import AuditFilter, where
from .signatures import failure_words, last_output, signature_text
from .sources import WorkstreamCodes, attempts_of, failed_by_step

ATTEMPT_TYPES = (StepStarted.type_name, StepPassed.type_name, StepFailed.type_name)
NO_FILTER = AuditFilter()
RUN_SUMMARY_COLUMNS = (
    "run_id, workstream_id, status, started_at, finished_at, elapsed_s, passed, failed, blocked, skipped, "
    "sequential_s, resumes, cancel_requests, drain_requests"
)


def _in_window(row: dict[str, Any], flt: AuditFilter) -> bool:
    at = row["started_at"]
    return (flt.since is None or at >= flt.since) and (flt.until is None or at < flt.until)


def run_summaries_rows(store: AuditQueries, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """One row per run (the run_summaries view), oldest first; the step filter does not apply."""
    params: dict[str, Any] = {}
    conditions = flt.conditions(params, step=None, time="started_at")
    query = f"SELECT {RUN_SUMMARY_COLUMNS} FROM run_summaries {where(conditions)} ORDER BY started_at, run_id"
    with store.audit_reading() as reader:
        return reader.dicts(query, params)


def run_summary(store: AuditQueries, run_id: str) -> dict[str, Any]:
    """The run_summaries row of `run_id`; RunNotFound if the log has no such run."""
    with store.audit_reading() as reader:
        rows = reader.dicts(
            f"SELECT {RUN_SUMMARY_COLUMNS} FROM run_summaries WHERE run_id = :r", {"r": run_id}
        )
    if not rows:
        raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
    return rows[0]


def timeline(store: EventStore, run_id: str, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Every attempt of every step of `run_id` in start order, with its offset from the run's start."""
    summary = run_summary(store, run_id)
    # One run's attempt events come through the run_id index; pairing starts with outcomes is
    # cheaper in Python than the view's per-attempt join.
    recorded = store.find_events(run_id=run_id, step_id=flt.step_id, types=ATTEMPT_TYPES)
    rows = [r for r in attempts_of(recorded, summary["workstream_id"]) if _in_window(r, flt)]
    rows.sort(key=lambda r: (r["started_at"], r["step_id"], r["attempt"]))
    origin = min([summary["started_at"], *(r["started_at"] for r in rows)])
    for row in rows:
        row["offset_s"] = row["started_at"] - origin
    _add_git(store, run_id, rows)
    _add_hosts(store, run_id, rows)
    return rows


FleetHosts = dict[tuple[str, int], tuple[str, str]]  # (step, attempt) -> (host, worker)


def fleet_hosts(store: AuditQueries, run_id: str, step_id: str | None = None) -> FleetHosts:
    """(host, worker) of each attempt of the run (of `step_id`) a fleet worker took, by (step,
    attempt), from the attempt ledger every worker writes (docs/workers.md): step.started names
    the driving machine and a slot of its own, not a process. Empty for a run not on workers."""
    with store.audit_reading() as reader:
        if reader.dialect == "sqlite":
            return {}  # a fleet's log is always in PostgreSQL
        if not reader.rows("SELECT 1 WHERE to_regclass('stepledger_fleet_attempts') IS NOT NULL"):
            return {}
        sql = "SELECT step_id, attempt, host, worker FROM stepledger_fleet_attempts WHERE run_id = :r"
        if step_id is not None:
            sql += " AND step_id = :s"
        rows = reader.rows(sql, {"r": run_id, "s": step_id})
    return {(step, attempt): (host, worker) for step, attempt, host, worker in rows}


def _add_hosts(store: AuditQueries, run_id: str, rows: list[dict[str, Any]]) -> None:
    """For a run on workers, the host and worker that really ran each attempt (`fleet_hosts`).
    An attempt no worker took has neither (host "")."""
    found = fleet_hosts(store, run_id)
    if not found:
        return  # not a run on workers
    for row in rows:
        host, worker = found.get((row["step_id"], row["attempt"]), ("", ""))
        row["host"], row["worker"], row["pid"] = host, worker, None


def _add_git(store: EventStore, run_id: str, rows: list[dict[str, Any]]) -> None:
    """Each attempt's branch, base commit and resulting commit, for a run with git isolation."""
    types = (WorktreeCreated.type_name, WorktreeCommitted.type_name)
    git: dict[tuple[str | None, int], dict[str, str]] = {}
    for event in store.find_events(run_id=run_id, types=types):
        p = event.payload
        got = git.setdefault((event.step_id, p["attempt"]), {})
        got["branch"], got["base_commit"] = p["branch"], p["base_commit"]
        if "commit" in p:
            got["commit"] = p["commit"]
    if not git:
        return  # no isolation: no columns
    for row in rows:
        got = git.get((row["step_id"], row["attempt"]), {})
        row.update(
            branch=got.get("branch", ""), base_commit=got.get("base_commit", ""), commit=got.get("commit", "")
        )


def failures(store: AuditQueries, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Failed attempts grouped by workstream, step and error signature: counts, first/last seen, excerpt."""
    with store.audit_reading() as reader:
        codes = WorkstreamCodes(reader)
        groups = [group for step in failed_by_step(reader, flt) for group in _failure_groups(step, codes)]
        latest = _latest_failures(reader, [g["last_position"] for g in groups])
    for group in groups:
        last_run_id, payload = latest[group.pop("last_position")]
        group["last_run_id"] = last_run_id
        group["reason"] = payload.get("reason")
        group["exit_code"] = payload.get("exit_code")
        group["output_excerpt"] = payload.get("output_excerpt") or ""
        # The same in words, for the table: how it ended, the error without the task's own
        # command line, and the last line the step wrote.
        group["failure"] = failure_words(group["reason"], group["exit_code"])
        group["error"] = signature_text(group["error_signature"])
        group["last_output"] = last_output(group["output_excerpt"])
    groups.sort(key=lambda r: (-r["count"], r["workstream_id"] or "", r["step_id"], r["error_signature"]))
    return groups


def _failure_groups(
    step: tuple[str, list[Any], list[Any], list[Any], list[Any]], codes: WorkstreamCodes
) -> list[dict[str, Any]]:
    """One step's failed attempts grouped by workstream and error signature."""
    step_id, runs, signatures, starts, positions = step
    starts = list(map(float, starts))  # exact text on SQLite (sources._exact)
    keys = list(zip(map(codes.__getitem__, runs), signatures, strict=True))
    in_key_order = sorted(range(len(keys)), key=keys.__getitem__)
    found = []
    for (code, signature), members in itertools.groupby(in_key_order, key=keys.__getitem__):
        indexes = list(members)
        times = list(map(starts.__getitem__, indexes))
        found.append({
            "workstream_id": codes.names[code], "step_id": step_id, "error_signature": signature,
            "count": len(indexes), "runs": len(set(map(runs.__getitem__, indexes))),
            "first_seen": min(times), "last_seen": max(times),
            "last_position": max(map(positions.__getitem__, indexes)),
        })  # fmt: skip
    return found


def _latest_failures(reader: Reader, positions: list[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """(run id, payload) of the events at `positions` (each group's latest failure)."""
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    for chunk in reader.chunks(sorted(positions)):
        params: dict[str, Any] = {}
        query = (
            f"SELECT position, run_id, payload FROM events WHERE {reader.in_list('position', chunk, params)}"
        )
        for position, run_id, payload in reader.rows(query, params):
            found[position] = (run_id, loads(payload) if isinstance(payload, str) else payload)
    return found


def actions(store: AuditQueries, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Every operator action (cancel, drain, skip, mark-passed, retry): who, when and why, oldest first."""
    with store.audit_reading() as reader:
        return actions_in(reader, flt)


def actions_in(reader: Reader, flt: AuditFilter) -> list[dict[str, Any]]:
    """`actions`, inside a read already open."""
    params: dict[str, Any] = {}
    conditions = flt.conditions(params, time="at")
    query = (
        "SELECT at, action, actor, run_id, workstream_id, step_id, reason FROM operator_actions "
        f"{where(conditions)} ORDER BY at, position"
    )
    return reader.dicts(query, params)
