"""The dependency graph of a run as an SVG for the HTML timeline: left to right by depth, compact.

A step's column is the length of the longest chain of requirements before it, computed in one pass
over a topological order (no recursion: a chain of thousands of steps is as deep as it is long).
Columns hold at most COLUMN_ROWS nodes (a wide level continues in the next column) and the columns
wrap into bands of BAND_COLUMNS stacked top to bottom, so a graph of thousands of steps stays a
page that scrolls down instead of a picture hundreds of thousands of pixels wide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from html import escape

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 170, 30, 60, 14, 20
COLUMN_ROWS = 40  # nodes in a column before a level continues in the next one
BAND_COLUMNS = 8  # columns side by side before the graph wraps into the next band
BAND_GAP = 40


def levels(order: Sequence[str], requires: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each step's depth: 0 without requirements, else one more than its deepest requirement.

    Kahn's algorithm over the steps in `order`; requirements outside `order` are ignored, and steps
    on a cycle (a log's workstream is acyclic, but the page must not hang on a bad one) get the
    depth their settled requirements give them.
    """
    known = set(order)
    deps = {s: [d for d in dict.fromkeys(requires.get(s, ())) if d in known and d != s] for s in order}
    waiting = {s: len(d) for s, d in deps.items()}
    dependents: dict[str, list[str]] = {s: [] for s in order}
    for step, step_deps in deps.items():
        for dep in step_deps:
            dependents[dep].append(step)
    depth = dict.fromkeys(order, 0)
    ready = deque(s for s in order if waiting[s] == 0)
    while ready:
        step = ready.popleft()
        for after in dependents[step]:
            depth[after] = max(depth[after], depth[step] + 1)
            waiting[after] -= 1
            if waiting[after] == 0:
                ready.append(after)
    return depth


def layout(order: Sequence[str], depth: Mapping[str, int]) -> tuple[dict[str, tuple[int, int]], int, int]:
    """Each step's top-left corner, and the picture's width and height."""
    by_level: dict[int, list[str]] = {}
    for step in order:
        by_level.setdefault(depth[step], []).append(step)
    columns: list[list[str]] = []
    for level in sorted(by_level):
        steps = by_level[level]
        columns += [steps[i : i + COLUMN_ROWS] for i in range(0, len(steps), COLUMN_ROWS)]
    where: dict[str, tuple[int, int]] = {}
    top = MARGIN
    width = 0
    for first in range(0, len(columns), BAND_COLUMNS):
        band = columns[first : first + BAND_COLUMNS]
        for i, column in enumerate(band):
            x = MARGIN + i * (NODE_W + GAP_X)
            for row, step in enumerate(column):
                where[step] = (x, top + row * (NODE_H + GAP_Y))
        width = max(width, 2 * MARGIN + len(band) * (NODE_W + GAP_X))
        top += max(len(c) for c in band) * (NODE_H + GAP_Y) + BAND_GAP
    return where, width, top - BAND_GAP - GAP_Y + MARGIN


def graph_svg(
    order: Sequence[str],
    requires: Mapping[str, Sequence[str]],
    states: Mapping[str, str],
    colour: dict[str, str],
) -> str:
    """The SVG: a box per step filled by its state's colour, an arrow per requirement."""
    where, width, height = layout(order, levels(order, requires))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>',
    ]
    for step in order:
        for dep in dict.fromkeys(requires.get(step, ())):
            if dep in where and dep != step:
                (x1, y1), (x2, y2) = where[dep], where[step]
                sx, sy, ex, ey = x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2
                mid = (sx + ex) / 2
                parts.append(f'<path class="edge" d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}" '
                             'marker-end="url(#arrow)"/>')  # fmt: skip
    for step in order:
        x, y = where[step]
        state = states.get(step, "pending")
        label = step if len(step) <= 24 else step[:23] + "…"
        box = f'x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{colour.get(state, "#bbb")}"'
        parts.append(f"<g><title>{escape(step)}: {escape(state)}</title><rect {box}/>"
                     f'<text x="{x + NODE_W / 2}" y="{y + 19}" text-anchor="middle" fill="#fff">'
                     f"{escape(label)}</text></g>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)
