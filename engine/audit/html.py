"""`timeline --html`: one self-contained page (inline CSS and SVG, no script) with the run's attempts
on a time axis, its dependency graph, and each step coloured by outcome.

The time axis shows what happened to the run besides its attempts: the stretches when no
orchestrator was alive (from the last event the previous one recorded to the resume that followed),
the resumes, and the operator's actions (cancel, drain, retry, skip, mark passed). Attempts that an
orchestrator's end cut short (interrupted, cancelled, a lost worker) are drawn hatched and grey,
apart from the failures of the step itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

from stepledger.engine.read.describe import format_duration, format_time
from stepledger.engine.read.expansions import expansions_in, steps_and_requirements
from stepledger.engine.read.status import params_text, run_params
from stepledger.events import (
    RecordedEvent,
    RunCancelRequested,
    RunDrainRequested,
    RunResumed,
    StepMarkedPassed,
    StepRetryRequested,
    StepSkipped,
)
from stepledger.events.state import UNCOUNTED_REASONS, fold
from stepledger.store.port import EventStore

from .graph_svg import graph_svg
from .queries import run_summary, timeline

COLOURS = {
    "passed": "#2e9d4f", "failed": "#d64541", "interrupted": "#8c8c8c", "tripped": "#8e1b1b",
    "blocked": "#9b59b6", "skipped": "#95a5a6", "running": "#e6a23c", "retrying": "#e67e22",
    "ready": "#5dade2", "pending": "#d5d8dc", "expanded": "#a9cce3",
}  # fmt: skip
ROW, LABEL, WIDTH, AXIS = 22, 220, 900, 40  # Gantt row height, label column, plot width, axis band (px)
COMPACT_ROW, COMPACT_AFTER = 14, 200  # thinner rows for runs of more steps than that
TICK_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
              900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)  # fmt: skip
TICKS_WANTED = 8
NO_STEPS = "<p>The recorded workstream has no steps.</p>"
ENGINE = "stepledger"  # who an automatic action is recorded as (engine/run/failures.py)
ACTIONS = {
    RunCancelRequested.type_name: "cancel",
    RunDrainRequested.type_name: "drain",
    StepRetryRequested.type_name: "retry",
    StepSkipped.type_name: "skip",
    StepMarkedPassed.type_name: "mark passed",
}

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #555; } .legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
.scroll { overflow: auto; max-height: 80vh; border: 1px solid #eee; }
table { border-collapse: collapse; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
svg text { font: 12px system-ui, sans-serif; } .axis { stroke: #ddd; } .edge { stroke: #888; fill: none; }
.gap { fill: url(#nobody); } .resume { stroke: #2471a3; stroke-width: 2; }
.action { stroke: #d35400; stroke-width: 2; stroke-dasharray: 4 3; }
.mark { font-size: 11px; } .on-bar { fill: #fff; pointer-events: none; }
"""
PATTERNS = (
    '<defs><pattern id="cut" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#8c8c8c"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#d0d0d0" stroke-width="3"/></pattern>'
    '<pattern id="nobody" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    '<rect width="8" height="8" fill="#fbeee6"/><line x1="0" y1="0" x2="0" y2="8" stroke="#f0d0bb" '
    'stroke-width="2"/></pattern></defs>'
)


@dataclass(frozen=True)
class Mark:
    """Something on the time axis besides an attempt: a resume, an operator action, or a gap."""

    kind: str  # "resume", "action" or "gap"
    at: float  # seconds from the run's start
    label: str
    until: float = 0.0  # a gap's end


def _colour(state: str) -> str:
    return COLOURS.get(state, "#bbbbbb")


def outcome_of(row: dict[str, Any]) -> str:
    """`interrupted` for a failure that the orchestrator's end caused, else the attempt's outcome."""
    if row["outcome"] == "failed" and row.get("reason") in UNCOUNTED_REASONS:
        return "interrupted"
    return str(row["outcome"])


def marks(events: list[RecordedEvent], origin: float) -> list[Mark]:
    """The resumes, the stretches before them with no orchestrator, and the operator's actions."""
    found = []
    previous: float | None = None
    for event in events:
        at = event.recorded_at - origin
        p = event.payload
        if event.type == RunResumed.type_name:
            if previous is not None and at > previous:
                found.append(Mark("gap", previous, "no orchestrator alive", until=at))
            found.append(Mark("resume", at, f"resumed by pid {p.get('pid')} on {p.get('host')}"))
        elif event.type in ACTIONS and p.get("by") != ENGINE:
            step = f" {event.step_id}" if event.step_id else ""
            why = f": {p['reason']}" if p.get("reason") else ""
            found.append(Mark("action", at, f"{ACTIONS[event.type]}{step} by {p.get('by', '?')}{why}"))
        previous = at
    return found


def tick_step(span: float) -> float:
    """A round interval (1, 2, 5, 10, 15, 30 s, 1, 2, 5 min, ...) giving about TICKS_WANTED ticks."""
    for step in TICK_STEPS:
        if span / step <= TICKS_WANTED:
            return step
    return math.ceil(span / TICKS_WANTED / 86400) * 86400.0


def tick_label(seconds: float, step: float) -> str:
    """`+250ms`, `+30s`, `+1m 30s`, `+2h 15m`: as precise as the interval, no more."""
    if step < 1:
        return (
            f"+{seconds * 1000:.0f}ms"
            if seconds < 1
            else f"+{seconds:.{max(0, -math.floor(math.log10(step)))}f}s"
        )
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"+{hours}h {minutes:02d}m" if step >= 60 else f"+{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"+{minutes}m" if secs == 0 else f"+{minutes}m {secs:02d}s"
    return f"+{secs}s"


def _gantt(rows: list[dict[str, Any]], found: list[Mark], line: str = "step_id") -> str:
    """The time axis (an SVG above a scroll box, so it stays in view) and, in the box, one line per
    step (or per other `line` key of the rows) in the order they first started, one bar per
    attempt, and the run's marks."""
    by_step: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["offset_s"], r["attempt"])):
        by_step.setdefault(r[line], []).append(r)
    ends = [r["offset_s"] + (r["duration_s"] or 0.0) for r in rows] + [m.until or m.at for m in found]
    span = max([*ends, 1e-9])
    step = tick_step(span)
    span = max(span, step)
    row = ROW if len(by_step) <= COMPACT_AFTER else COMPACT_ROW  # a big run: thinner lines
    plot = row * len(by_step)

    def x_of(seconds: float) -> float:
        return LABEL + WIDTH * seconds / span

    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL + WIDTH + 60}"'
    axis = [f'{svg} height="{AXIS}">']
    parts = [f'{svg} height="{plot}">', PATTERNS]
    for mark in (m for m in found if m.kind == "gap"):
        x, w = x_of(mark.at), max(1.0, x_of(mark.until) - x_of(mark.at))
        title = f"{mark.label}: {format_duration(mark.until - mark.at)}"
        parts.append(f'<rect class="gap" x="{x:.1f}" y="0" width="{w:.1f}" height="{plot}">'
                     f"<title>{escape(title)}</title></rect>")  # fmt: skip
    for n in range(int(span / step + 1e-9) + 1):
        x = x_of(n * step)
        label = escape(tick_label(n * step, step))
        tick = f'<line class="axis" x1="{x:.1f}" y1="{AXIS - 6}" x2="{x:.1f}" y2="{AXIS}"/>'
        axis.append(f'<text x="{x:.1f}" y="14" text-anchor="middle">{label}</text>{tick}')
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{plot}"/>')
    text_y = row // 2 + 4
    for i, (sid, attempts) in enumerate(by_step.items()):
        y = i * row
        parts.append(f'<text x="{LABEL - 8}" y="{y + text_y}" text-anchor="end">{escape(sid)}</text>')
        for r in attempts:
            outcome = outcome_of(r)
            x = x_of(r["offset_s"])
            w = max(2.0, WIDTH * (r["duration_s"] or 0.0) / span)
            fill = "url(#cut)" if outcome == "interrupted" else _colour(outcome)
            took = format_duration(r["duration_s"] or 0)
            tip = (f"{r['step_id']} attempt {r['attempt']}: {outcome}, {took} on {_where(r)}"
                   + (f" ({r['reason']})" if r.get("reason") else ""))  # fmt: skip
            box = f'x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row - 4}" rx="2" fill="{fill}"'
            parts.append(f'<rect class="attempt {outcome}" {box}><title>{escape(tip)}</title></rect>')
            if line != "step_id" and w >= 7 * len(r["step_id"]) + 6:  # a line of hosts: name the step
                parts.append(
                    f'<text class="on-bar" x="{x + 3:.1f}" y="{y + text_y}">{escape(r["step_id"])}</text>'
                )
    for mark in (m for m in found if m.kind != "gap"):
        x = x_of(mark.at)
        parts.append(f'<line class="{mark.kind}" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{plot}">'
                     f"<title>{escape(mark.label)}</title></line>")  # fmt: skip
        word = "resumed" if mark.kind == "resume" else mark.label.split(" by ")[0]
        axis.append(f'<text class="mark" x="{x + 3:.1f}" y="{AXIS - 10}">{escape(word)}</text>')
    return "".join([*axis, "</svg>"]) + f'<div class="scroll">{"".join([*parts, "</svg>"])}</div>'


def _where(row: dict[str, Any]) -> str:
    """Where an attempt ran: `host pid N` on one machine, `host (worker host:pid)` on a fleet."""
    if "worker" in row:  # a run on workers (queries._add_hosts)
        return f"{row['host']} (worker {row['worker']})" if row["host"] else "no worker"
    return f"{row['host'] or '?'} pid {row['pid'] or '?'}"


def host_lanes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempts of a run on workers with the line each takes on a chart of hosts: one per host,
    more where a host ran attempts at once (`m1`, `m1 #2`, …); those no worker took are left out."""
    ends: dict[str, list[float]] = {}  # host -> the end of the last attempt on each of its lines
    placed = []
    for r in sorted(rows, key=lambda r: (r["offset_s"], r["step_id"], r["attempt"])):
        if not r.get("host"):
            continue
        lines = ends.setdefault(r["host"], [])
        end = r["offset_s"] + (r["duration_s"] or 0.0)
        free = next((n for n, last in enumerate(lines) if last <= r["offset_s"]), len(lines))
        if free == len(lines):
            lines.append(end)
        else:
            lines[free] = end
        placed.append({**r, "lane": r["host"] if free == 0 else f"{r['host']} #{free + 1}"})
    return placed


def _attempts_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("step", "#", "start", "took", "outcome", "worker", "reason"))
    body = "".join(
        f"<tr><td>{escape(r['step_id'])}</td><td>{r['attempt']}</td><td>{escape(format_time(r['started_at']))}</td>"
        f"<td>{escape(format_duration(r['duration_s'] or 0))}</td>"
        f'<td style="color:{_colour(outcome_of(r))}">{escape(outcome_of(r))}</td>'
        f"<td>{escape(_worker_cell(r))}</td><td>{escape(r['reason'] or '')}</td></tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _worker_cell(row: dict[str, Any]) -> str:
    if "worker" in row:  # a run on workers: the worker's name is host:pid of the worker process
        return str(row["worker"] or "")
    return f"{row['host'] or ''}:{row['pid'] or ''}"


def _marks_list(found: list[Mark]) -> str:
    if not found:
        return ""
    items = "".join(
        f"<li>+{escape(format_duration(m.at))}: {escape(m.label)}"
        + (f" for {escape(format_duration(m.until - m.at))}" if m.kind == "gap" else "")
        + "</li>"
        for m in found
    )
    return f"<ul class='marks'>{items}</ul>"


def _hosts_section(rows: list[dict[str, Any]], found: list[Mark]) -> str:
    """A run on workers: its attempts on the time axis again, one line per host (docs/workers.md)."""
    placed = host_lanes(rows) if any("worker" in r for r in rows) else []
    if not placed:
        return ""
    hosts = len({r["host"] for r in placed})
    title = f"Attempts per host ({hosts} host{'s' if hosts != 1 else ''})"
    return f"<h2>{title}</h2>\n{_gantt(placed, found, 'lane')}"


def timeline_html(store: EventStore, run_id: str) -> str:
    """The self-contained HTML page of `run_id`: header, Gantt of attempts, dependency graph, attempts."""
    summary = run_summary(store, run_id)
    rows = timeline(store, run_id)
    events = list(store.read_run(run_id))
    run = fold(run_id, events)
    declared, requires = steps_and_requirements(run.workstream, expansions_in(events))  # for_each's too
    order = declared + [s for s in run.steps if s not in requires]
    origin = min([summary["started_at"], *(r["started_at"] for r in rows)])
    found = marks(events, origin)
    states = {sid: step.state for sid, step in run.steps.items()}
    legend = "".join(f'<span><i style="background:{c}"></i>{escape(s)}</span>' for s, c in COLOURS.items())
    legend += ('<span><i style="background:#fbeee6"></i>no orchestrator alive</span>'
               '<span><i style="background:#2471a3"></i>resume</span>'
               '<span><i style="background:#d35400"></i>operator action</span>')  # fmt: skip
    elapsed = format_duration(summary["elapsed_s"]) if summary["elapsed_s"] is not None else "still running"
    params = params_text(run_params(run))
    given = f' · parameters <code class="params">{escape(params)}</code>' if params else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stepledger · {escape(run_id)}</title>
<style>{CSS}</style></head><body>
<h1>Run {escape(run_id)}</h1>
<div class="meta">workstream {escape(summary["workstream_id"] or "?")} · {escape(summary["status"])} ·
started {escape(format_time(summary["started_at"]))} · {escape(elapsed)} · {len(rows)} attempts{given}</div>
<p class="legend">{legend}</p>
<h2>Attempts on the time axis</h2>
{_gantt(rows, found) if rows else "<p>No attempt was started.</p>"}
{_marks_list(found)}
{_hosts_section(rows, found)}
<h2>Dependency graph (steps coloured by state)</h2>
{f'<div class="scroll">{graph_svg(order, requires, states, COLOURS)}</div>' if order else NO_STEPS}
<h2>Every attempt</h2>
{_attempts_table(rows)}
</body></html>
"""
