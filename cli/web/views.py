"""What each page shows, shaped from the application API's answers (no page reads the log itself)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepledger.engine.read.describe import format_duration, format_time
from stepledger.events import AcceptanceTestsRecorded, StepFailed, StepPassed

from ..output import csv_text

if TYPE_CHECKING:
    from stepledger.engine.api import Stepledger

PAGE_SIZE = 50
LOG_SHOWN = 256 * 1024  # bytes of an attempt's log a page shows at first (the end of it)
STATUSES = ("running", "passed", "failed", "cancelled", "rolled_back", "partially_rolled_back")
STATE_ORDER = (
    "running",
    "queued",
    "waiting",
    "retrying",
    "ready",
    "pending",
    "failed",
    "tripped",
    "blocked",
    "skipped",
    "passed",
)
# The audit views (the CLI's `audit` questions) and their columns: (key, header).
AUDIT_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "failures": [("workstream_id", "workstream"), ("step_id", "step"), ("error_signature", "error signature"),
                 ("count", "count"), ("runs", "runs"), ("first_seen", "first seen"),
                 ("last_seen", "last seen"), ("output_excerpt", "last output")],
    "durations": [("workstream_id", "workstream"), ("step_id", "step"), ("count", "passed"),
                  ("median_s", "median"), ("p95_s", "p95"), ("max_s", "max"), ("trend_text", "trend")],
    "retries": [("run_id", "run"), ("step_id", "step"), ("attempts", "attempts"), ("failures", "failed"),
                ("last_failure", "last failure"), ("resolution", "resolution")],
    "actions": [("at", "when"), ("action", "action"), ("actor", "by"), ("run_id", "run"),
                ("step_id", "step"), ("reason", "reason")],
}  # fmt: skip
AUDIT_TABLE_LIMIT = 500  # rows a page shows; the CSV has them all
_TIMES = {"first_seen", "last_seen", "at"}
_DURATIONS = {"median_s", "p95_s", "max_s"}


@dataclass(frozen=True)
class RunFilter:
    """The runs page's filters, as the query string gave them."""

    status: str = ""
    workstream: str = ""
    since: str = ""
    until: str = ""
    last: str = ""
    page: int = 1

    @classmethod
    def of(cls, query: Any) -> RunFilter:
        page = query.get("page", "1")
        return cls(
            status=query.get("status", ""),
            workstream=query.get("workstream", ""),
            since=query.get("since", ""),
            until=query.get("until", ""),
            last=query.get("last", ""),
            page=max(1, int(page)) if page.isdigit() else 1,
        )

    def query(self, page: int) -> str:
        from urllib.parse import urlencode

        values = {k: v for k, v in vars(self).items() if v and k != "page"}
        return urlencode({**values, "page": page})


def run_row(row: dict[str, Any]) -> dict[str, Any]:
    """A run_summaries row as the runs page (and its live updates) shows it."""
    counts = [(n, row.get(n)) for n in ("passed", "failed", "blocked", "skipped")]
    return {
        "run_id": row["run_id"],
        "workstream_id": row["workstream_id"] or "",
        "status": row["status"],
        "started": format_time(row["started_at"]),
        "duration": format_duration(row["elapsed_s"]) if row["elapsed_s"] is not None else "…",
        "steps": ", ".join(f"{n} {name}" for name, n in counts if n) if row["status"] != "running" else "",
        "resumes": row.get("resumes") or 0,
    }


def runs_page(api: Stepledger, flt: RunFilter, every_run: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs page: the filtered runs of `every_run` (oldest first), newest first, one page of
    them, and how many there are. The time filters are the audit's (BadAuditInput for a bad one)."""
    window = api.audit_filter(None, None, None, flt.since or None, flt.until or None, flt.last or None)
    rows = [
        r for r in every_run
        if (not flt.status or r["status"] == flt.status)
        and (not flt.workstream or r["workstream_id"] == flt.workstream)
        and (window.since is None or r["started_at"] >= window.since)
        and (window.until is None or r["started_at"] < window.until)
    ]  # fmt: skip
    total = len(rows)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(flt.page, pages)
    end = total - (page - 1) * PAGE_SIZE
    shown = reversed(rows[max(0, end - PAGE_SIZE) : end])
    return {"runs": [run_row(r) for r in shown], "total": total, "page": page, "pages": pages}


def graph_columns(requirements: dict[str, list[str]]) -> list[list[str]]:
    """The steps in columns: each one column right of the last of the steps it waits for."""
    waits = {step: [d for d in deps if d in requirements] for step, deps in requirements.items()}
    dependents: dict[str, list[str]] = {step: [] for step in waits}
    for step, deps in waits.items():
        for dep in deps:
            dependents[dep].append(step)
    missing = {step: len(deps) for step, deps in waits.items()}
    level: dict[str, int] = {}
    ready = [step for step, n in missing.items() if n == 0]
    while ready:  # Kahn's order, so a 2,000-step chain needs no recursion
        step = ready.pop()
        level[step] = 1 + max((level[d] for d in waits[step]), default=-1)
        for after in dependents[step]:
            missing[after] -= 1
            if missing[after] == 0:
                ready.append(after)
    last = max(level.values(), default=-1) + 1
    columns: list[list[str]] = [[] for _ in range(last + (len(level) < len(waits)))]
    for step in requirements:
        columns[level.get(step, last)].append(step)
    return columns


def run_page(api: Stepledger, run_id: str) -> dict[str, Any]:
    """A run: its summary, every step with its state, the graph's columns and its newest events."""
    head = api.head()  # the page's live stream starts here, so no event is missed or repeated
    status = api.status(run_id)
    summary = api.run_summary(run_id)
    requirements = api.step_requirements(run_id)
    steps = [{**step, **look_of(step)} for step in status["steps"]]
    counts: dict[tuple[str, str], int] = {}  # (look, shown) -> steps
    for step in steps:
        counts[step["look"], step["shown"]] = counts.get((step["look"], step["shown"]), 0) + 1
    return {
        "run": {**status, "steps": steps},
        "summary": run_row(summary),
        "started": format_time(status["started_at"]),
        "params": api.params_text(status["params"]) if status.get("params") else "",
        "counts": sorted(
            ((look, shown, n) for (look, shown), n in counts.items()),
            key=lambda c: (STATE_ORDER.index(c[0]) if c[0] in STATE_ORDER else 99, c[1]),
        ),
        "columns": graph_columns(requirements),
        "looks": {s["step_id"]: (s["look"], s["shown"]) for s in steps},
        "events": api.event_lines(run_id, newest=200),
        "head": head,
    }


def step_page(api: Stepledger, run_id: str, step_id: str) -> dict[str, Any]:
    """A step: its state, each attempt (times, worker, outcome, output), acceptance results, outputs."""
    status = api.status(run_id)
    step = next((s for s in status["steps"] if s["step_id"] == step_id), None)
    # log_files says (one line, the run's steps named) when the run has no such step.
    paths = api.log_files(run_id, step_id) if step is None or step["attempt"] else []
    assert step is not None
    head = api.head()
    attempts = api.audit("timeline", run_id, api.audit_filter(run=run_id, step=step_id))
    wanted = [AcceptanceTestsRecorded.type_name, StepPassed.type_name, StepFailed.type_name]
    tests: dict[int, list[dict[str, Any]]] = {}
    outputs: dict[str, Any] = {}
    excerpts: dict[int, str] = {}
    for event in api.events(run_id, step=step_id, types=wanted):
        if event.type == AcceptanceTestsRecorded.type_name:
            tests[event.payload["attempt"]] = event.payload["results"]
        elif event.type == StepPassed.type_name:
            outputs = event.payload.get("outputs") or {}
        else:
            excerpts[event.payload["attempt"]] = event.payload.get("output_excerpt") or ""
    shown = []
    for row in attempts:
        n = row["attempt"]
        log = log_text(paths[n - 1]) if n - 1 < len(paths) else None
        if log is None or log["missing"]:  # not on this machine: a worker's, on a run on workers
            log = database_log_text(api, run_id, step_id, n)
        shown.append({
            **row, "started": format_time(row["started_at"]),
            "took": format_duration(row["duration_s"]) if row["duration_s"] is not None else "…",
            "tests": tests.get(n, []), "excerpt": excerpts.get(n, ""), "log": log,
            "on_workers": "worker" in row,  # the audit adds host and worker for a run on workers
        })  # fmt: skip
    return {"run": status, "step": {**step, **look_of(step)}, "attempts": shown, "outputs": outputs,
            "head": head}  # fmt: skip


def look_of(step: dict[str, Any]) -> dict[str, str]:
    """How a step's state shows: its text (`waiting for a worker (queue gpu)` for a step of a run on
    workers whose attempt no worker has taken, as `status` says it) and its colour's class."""
    waiting = step.get("waiting")
    look = step["state"] if not waiting else "queued" if waiting["served"] else "waiting"
    return {"shown": step.get("shown_state") or step["state"], "look": look}


def log_text(path: Path) -> dict[str, Any]:
    """The end of an attempt's log file (at most LOG_SHOWN bytes), and how far the page has read it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(0, size - LOG_SHOWN))
            data = f.read(size - f.tell())
    except FileNotFoundError:
        return {"path": str(path), "text": "", "offset": 0, "cut": 0, "missing": True, "database": False}
    cut = size - len(data)
    return {"path": str(path), "text": data.decode("utf-8", "replace"), "offset": size, "cut": cut,
            "missing": False, "database": False}  # fmt: skip


def database_log_text(api: Stepledger, run_id: str, step_id: str, attempt: int) -> dict[str, Any] | None:
    """The end of the database's copy of an attempt's log (at most LOG_SHOWN bytes, with the line
    saying what the cap of STEPLEDGER_FLEET_LOG_BYTES dropped), or None if the database has none."""
    part = api.fleet_log_part(run_id, step_id, attempt, None, LOG_SHOWN)
    if part is None:
        return None
    # The database keeps the log from `kept_from`; the page shows from `start` (later, when the
    # copy is longer than the page shows).
    cut = part.start if part.start > part.kept_from else 0
    text = (b"" if cut else part.text_before(0)) + part.data
    return {"path": "", "text": text.decode("utf-8", "replace"), "offset": part.start + len(part.data),
            "cut": cut, "missing": False, "database": True}  # fmt: skip


def audit_rows(api: Stepledger, view: str, query: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows of an audit view with the CLI's filters (BadAuditInput for a bad time or span)."""
    filters = {k: query.get(k, "") for k in ("workstream", "run", "step", "since", "until", "last")}
    flt = api.audit_filter(
        *(filters[k] or None for k in ("workstream", "run", "step", "since", "until", "last"))
    )
    if view == "retries":
        rows, _ = api.audit("newest_retries", flt, None)
    else:
        rows = api.audit(view, flt)
    return rows, filters


def audit_cell(key: str, value: Any) -> str:
    """A cell of an audit table as text."""
    if value is None:
        return ""
    if key in _TIMES:
        return format_time(value)
    if key in _DURATIONS:
        return format_duration(value)
    if key == "output_excerpt":
        lines = str(value).strip().splitlines()
        return lines[-1][:160] if lines else ""
    return str(value)


def audit_csv(view: str, rows: list[dict[str, Any]]) -> str:
    """The rows as the CLI's `--csv` writes them: a header line of the first row's keys, then the rows."""
    return csv_text(list(rows[0]) if rows else [key for key, _ in AUDIT_COLUMNS[view]], rows)
