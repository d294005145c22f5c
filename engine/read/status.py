"""Read-side answers for `status`, `runs` and `logs`, from the projections (or a fold of the log)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from stepledger.events.state import RunState
from stepledger.events.types import RunOutcome
from stepledger.store.port import EventStore

from ..errors import RunNotFound, UserInputError
from ..execution import files
from ..paths import run_dir_of
from ..session.liveness import orchestrator_gone
from .describe import format_duration, format_time, last_error_line
from .expansions import expansion_note, recorded_expansions, steps_and_requirements
from .run_ids import resolve_run_id

if TYPE_CHECKING:
    from ..fleet.reading import FleetReader

RUN_STATUSES = ("running", *get_args(RunOutcome))


def run_state(store: EventStore, run_id: str | None) -> RunState:
    """The current state of the run `run_id` names (a unique prefix; None or `latest`: the newest)."""
    run_id = resolve_run_id(store, run_id)
    state = store.run_state(run_id)
    if state is None or state.started_at is None:
        raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
    return state


def shown_status(store: EventStore, run: RunState) -> tuple[str, str | None]:
    """The run's status as shown, and whether its orchestrator is "alive" or "gone" (None: it ended),
    or "waiting" for a worker to drive it (a run driven by workers, docs/workers.md).

    A run the log says is running may have lost its orchestrator (kill -9, a crash, a machine that
    went down): nobody drives it until `resume`, and "running" alone would hide that. A run driven
    by workers is taken over by the fleet instead, without a `resume`.
    """
    if run.status != "running":
        return run.status, None
    if orchestrator_gone(store, run.run_id):
        if run.options.get("worker_driven"):
            return "running (waiting for a worker to drive it)", "waiting"
        return f"running (orchestrator gone — resume {run.run_id})", "gone"
    return run.status, "alive"


def _step_order(run: RunState, expansions: dict[str, list[str]] | None = None) -> list[str]:
    declared, _ = steps_and_requirements(run.workstream, expansions or {})
    known = set(declared)
    return declared + [sid for sid in run.steps if sid not in known]


def _states(run: RunState) -> set[str]:
    return {step.state for step in run.steps.values()}


def run_params(run: RunState) -> dict[str, Any]:
    """The parameters the run was started with (recorded with its workstream in run.started)."""
    params = run.workstream.get("params") if isinstance(run.workstream, dict) else None
    return dict(params) if isinstance(params, dict) else {}


def params_text(params: dict[str, Any]) -> str:
    """`name=value` pairs, as `status` and `runs` show them."""
    shown = {k: ("true" if v else "false") if isinstance(v, bool) else v for k, v in params.items()}
    return " ".join(f"{name}={value}" for name, value in shown.items())


def run_status(store: EventStore, run_id: str | None, fleet: FleetReader | None = None) -> dict[str, Any]:
    """Each step's state, attempt, duration and last error, with the run's own status; for a run on
    workers (`fleet` reads its PostgreSQL database), which of its running steps still wait for a
    worker."""
    run = run_state(store, run_id)
    expansions = recorded_expansions(store, run.run_id) if "expanded" in _states(run) else {}
    steps = []
    for sid in _step_order(run, expansions):
        step = run.steps.get(sid)
        if step is None:
            steps.append({"step_id": sid, "state": "pending", "attempt": 0, "duration_s": 0.0,
                          "duration": "", "last_error": "", "blocked_by": ""})  # fmt: skip
            continue
        error = last_error_line(step.last_error, 200)
        if step.state == "blocked":
            error = f"blocked by {step.blocked_by}"
        elif step.state == "expanded" and sid in expansions:
            error = expansion_note(expansions[sid])
        elif error and step.last_reason:
            error = f"{step.last_reason}: {error}"
        steps.append({
            "step_id": sid, "state": step.state, "attempt": step.attempt,
            "duration_s": round(step.total_duration_s, 3),
            "duration": format_duration(step.total_duration_s) if step.total_duration_s else "",
            "last_error": error, "blocked_by": step.blocked_by,
            **({"expanded_into": expansions[sid]} if sid in expansions else {}),
        })  # fmt: skip
    for row in steps:
        row["shown_state"], row["waiting"] = row["state"], None
    running = any(row["state"] == "running" for row in steps)
    if fleet is not None and running and run.options.get("on_workers"):
        show_waiting(steps, fleet, run.run_id)
    shown, orchestrator = shown_status(store, run)
    return {
        "run_id": run.run_id, "workstream_id": run.workstream_id, "status": run.status,
        "shown_status": shown, "orchestrator": orchestrator,
        "started_at": run.started_at, "finished_at": run.finished_at, "steps": steps,
        "params": run_params(run),
    }  # fmt: skip


def show_waiting(steps: list[dict[str, Any]], fleet: FleetReader, run_id: str) -> None:
    """Running steps whose attempt's job no worker has taken yet: `waiting for a worker (queue Q)`
    when no live worker serves its queue, `queued (queue Q)` when one does (docs/workers.md). The
    log says `running` (the attempt was started); `shown_state` says what it is doing."""
    waiting = fleet.waiting_attempts(run_id)
    for row in steps:
        found = waiting.get(row["step_id"])
        if found is None or row["state"] != "running" or found["attempt"] != row["attempt"]:
            continue
        queue = found["queue"]
        waits = "queued" if found["served"] else "waiting for a worker"
        row["shown_state"] = f"{waits} (queue {queue})"
        row["waiting"] = {"queue": queue, "served": found["served"]}


def list_runs(
    store: EventStore, limit: int | None = None, status: str | None = None, workstream: str | None = None
) -> list[dict[str, Any]]:
    """The runs, newest first, with outcome, timing and step counts: the first `limit` of those with
    `status` (as recorded: running, passed, failed, ...) and of `workstream`."""
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit must be 1 or more, got {limit}")
    if status is not None and status not in RUN_STATUSES:
        raise UserInputError(f"--status {status!r} is not a run status; one of: {', '.join(RUN_STATUSES)}")
    # The store reads the steps and workstreams of the runs shown only, not of the whole history.
    chosen = store.run_states(newest=limit, status=status or None, workstream=workstream or None)
    rows: list[dict[str, Any]] = []
    for run in sorted(chosen, key=lambda r: r.started_at or 0, reverse=True):
        counts: dict[str, int] = {}
        for step in run.steps.values():
            counts[step.state] = counts.get(step.state, 0) + 1
        elapsed = (run.finished_at - run.started_at) if run.finished_at and run.started_at else None
        shown, orchestrator = shown_status(store, run)
        rows.append({
            "run_id": run.run_id, "workstream_id": run.workstream_id, "status": run.status,
            "shown_status": shown, "orchestrator": orchestrator,
            "started_at": run.started_at, "finished_at": run.finished_at,
            "started": format_time(run.started_at), "params": run_params(run),
            "elapsed_s": elapsed, "elapsed": format_duration(elapsed) if elapsed is not None else "",
            "steps": counts,
            "steps_summary": ", ".join(f"{n} {state}" for state, n in sorted(counts.items())),
        })  # fmt: skip
    return rows


def log_files(store: EventStore, run_id: str, step_id: str | None) -> list[Path]:
    """The orchestrator.log of a run, or the output log of every attempt of one step."""
    run = run_state(store, run_id)
    folder = run_dir_of(run.workdir, run.run_id)
    if step_id is None:
        return [folder / "orchestrator.log"]
    step = run.steps.get(step_id)
    if step is None:
        known = ", ".join(_step_order(run)) or "none"
        raise UserInputError(f"run {run_id} has no step {step_id!r} (its steps: {known})")
    return [Path(files.log_path(str(folder), step_id, n)) for n in range(1, step.attempt + 1)]
