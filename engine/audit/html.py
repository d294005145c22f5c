"""`timeline --html`: one self-contained page (inline CSS and SVG) with the run's attempts on a time
axis, its dependency graph, and each step coloured by outcome."""

from __future__ import annotations

from html import escape
from typing import Any

from stepledger.engine.read.describe import format_duration, format_time
from stepledger.events.state import RunState, fold
from stepledger.store.port import AuditQueries

from .queries import run_summary, timeline
from .why import declared_steps, requirements

COLOURS = {
    "passed": "#2e9d4f", "failed": "#d64541", "tripped": "#8e1b1b", "blocked": "#9b59b6",
    "skipped": "#95a5a6", "running": "#e6a23c", "retrying": "#e67e22", "ready": "#5dade2",
    "pending": "#d5d8dc",
}  # fmt: skip
ROW, LABEL, WIDTH = 22, 220, 900  # Gantt row height, label column and plot width, in pixels
NODE_W, NODE_H, GAP_X, GAP_Y = 170, 30, 60, 14

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.meta { color: #555; } .legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
table { border-collapse: collapse; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
svg text { font: 12px system-ui, sans-serif; } .axis { stroke: #bbb; } .edge { stroke: #888; fill: none; }
"""


def _colour(state: str) -> str:
    return COLOURS.get(state, "#bbbbbb")


def _gantt(rows: list[dict[str, Any]], order: list[str]) -> str:
    """An SVG with one line per step and one bar per attempt."""
    steps = [s for s in order if any(r["step_id"] == s for r in rows)]
    span = max([r["offset_s"] + (r["duration_s"] or 0.0) for r in rows] + [1e-9])
    height = ROW * len(steps) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL + WIDTH + 20}" height="{height}">']
    for tick in range(6):
        x = LABEL + WIDTH * tick / 5
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 18}"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">'
                     f"+{escape(format_duration(span * tick / 5))}</text>")  # fmt: skip
    for i, step in enumerate(steps):
        y = i * ROW
        parts.append(f'<text x="{LABEL - 8}" y="{y + 15}" text-anchor="end">{escape(step)}</text>')
        for r in (r for r in rows if r["step_id"] == step):
            x = LABEL + WIDTH * r["offset_s"] / span
            w = max(2.0, WIDTH * (r["duration_s"] or 0.0) / span)
            tip = (f"{step} attempt {r['attempt']}: {r['outcome']}, {format_duration(r['duration_s'] or 0)}"
                   f" on {r['host'] or '?'} pid {r['pid'] or '?'}"
                   + (f" ({r['reason']})" if r.get("reason") else ""))  # fmt: skip
            parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{ROW - 6}" rx="3" '
                         f'fill="{_colour(r["outcome"])}"><title>{escape(tip)}</title></rect>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _levels(run: RunState, order: list[str]) -> dict[str, int]:
    """Each step's column in the graph: the length of the longest chain of requirements before it."""
    levels: dict[str, int] = {}

    def level(step: str, seen: frozenset[str]) -> int:
        if step not in levels:
            deps = [d for d in requirements(run, step) if d in order and d not in seen]
            levels[step] = 1 + max((level(d, seen | {step}) for d in deps), default=-1)
        return levels[step]

    for step in order:
        level(step, frozenset())
    return levels


def _graph(run: RunState, order: list[str]) -> str:
    """An SVG of the dependency graph, left to right, each node filled by its step's state."""
    levels = _levels(run, order)
    columns: dict[int, list[str]] = {}
    for step in order:
        columns.setdefault(levels[step], []).append(step)
    where = {
        step: (20 + col * (NODE_W + GAP_X), 20 + row * (NODE_H + GAP_Y))
        for col, steps in columns.items()
        for row, step in enumerate(steps)
    }
    width = 40 + (max(columns, default=0) + 1) * (NODE_W + GAP_X)
    height = 40 + max((len(s) for s in columns.values()), default=1) * (NODE_H + GAP_Y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>',
    ]
    for step in order:
        for dep in requirements(run, step):
            if dep in where:
                (x1, y1), (x2, y2) = where[dep], where[step]
                sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
                mid = (sx + ex) / 2
                parts.append(f'<path class="edge" d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}" '
                             'marker-end="url(#arrow)"/>')  # fmt: skip
    for step in order:
        x, y = where[step]
        state = run.steps[step].state if step in run.steps else "pending"
        label = step if len(step) <= 24 else step[:23] + "…"
        box = f'x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{_colour(state)}"'
        parts.append(f"<g><title>{escape(step)}: {escape(state)}</title><rect {box}/>"
                     f'<text x="{x + NODE_W / 2}" y="{y + 19}" text-anchor="middle" fill="#fff">'
                     f"{escape(label)}</text></g>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _attempts_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("step", "#", "start", "took", "outcome", "worker", "reason"))
    body = "".join(
        f"<tr><td>{escape(r['step_id'])}</td><td>{r['attempt']}</td><td>{escape(format_time(r['started_at']))}</td>"
        f"<td>{escape(format_duration(r['duration_s'] or 0))}</td>"
        f'<td style="color:{_colour(r["outcome"])}">{escape(r["outcome"])}</td>'
        f"<td>{escape(str(r['host'] or ''))}:{r['pid'] or ''}</td><td>{escape(r['reason'] or '')}</td></tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def timeline_html(store: AuditQueries, run_id: str) -> str:
    """The self-contained HTML page of `run_id`: header, Gantt of attempts, dependency graph, attempts."""
    summary = run_summary(store, run_id)
    rows = timeline(store, run_id)
    run = fold(run_id, store.read_run(run_id))
    order = declared_steps(run) + [s for s in run.steps if s not in declared_steps(run)]
    legend = "".join(f'<span><i style="background:{c}"></i>{escape(s)}</span>' for s, c in COLOURS.items())
    elapsed = format_duration(summary["elapsed_s"]) if summary["elapsed_s"] is not None else "still running"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>stepledger · {escape(run_id)}</title>
<style>{CSS}</style></head><body>
<h1>Run {escape(run_id)}</h1>
<div class="meta">workstream {escape(summary["workstream_id"] or "?")} · {escape(summary["status"])} ·
started {escape(format_time(summary["started_at"]))} · {escape(elapsed)} · {len(rows)} attempts</div>
<p class="legend">{legend}</p>
<h2>Attempts on the time axis</h2>
{_gantt(rows, order) if rows else "<p>No attempt was started.</p>"}
<h2>Dependency graph (steps coloured by state)</h2>
{_graph(run, order) if order else "<p>The recorded workstream has no steps.</p>"}
<h2>Every attempt</h2>
{_attempts_table(rows)}
</body></html>
"""
