"""Drawing the dependency graph: Mermaid and DOT text always, SVG/PNG through Graphviz `dot`."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Literal

from stepledger.engine.errors import UserInputError
from stepledger.engine.workstream.model import Workstream

GraphFormat = Literal["mermaid", "dot", "svg", "png"]
FORMATS: tuple[str, ...] = ("mermaid", "dot", "svg", "png")
INSTALL_HINT = (
    "Graphviz `dot` is not installed; install it (`apt-get install graphviz`, `brew install graphviz`) "
    "or use --format mermaid or --format dot"
)


class GraphvizMissing(UserInputError):
    """SVG/PNG need Graphviz's `dot` on PATH; install it or choose a text format."""


def _mermaid_label(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(ws: Workstream) -> str:
    """A Mermaid flowchart: an arrow from each step to the steps that wait for it, phases as subgraphs."""
    node = {s.id: f"s{i}" for i, s in enumerate(ws.steps)}
    lines = ["flowchart TD"]
    declared = set()
    for p, phase in enumerate(ws.phases):
        lines.append(f'  subgraph p{p}["{_mermaid_label(phase.get("name") or phase["id"])}"]')
        for step_id in phase["steps"]:
            if step_id in node and step_id not in declared:
                lines.append(f'    {node[step_id]}["{_mermaid_label(step_id)}"]')
                declared.add(step_id)
        lines.append("  end")
    for step in ws.steps:
        if step.id not in declared:
            lines.append(f'  {node[step.id]}["{_mermaid_label(step.id)}"]')
            declared.add(step.id)
    for step in ws.steps:
        for dep in step.requires:
            if dep in node:
                lines.append(f"  {node[dep]} --> {node[step.id]}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid DOT quoted id (backslash and quote escaped)


def to_dot(ws: Workstream) -> str:
    """A Graphviz digraph: an edge from each step to the steps that wait for it, phases as clusters."""
    lines = [f"digraph {_q(ws.id or 'workstream')} {{", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    in_phase = set()
    for p, phase in enumerate(ws.phases):
        lines.append(f"  subgraph cluster_{p} {{")
        lines.append(f"    label={_q(phase.get('name') or phase['id'])};")
        for step_id in phase["steps"]:
            lines.append(f"    {_q(step_id)};")
            in_phase.add(step_id)
        lines.append("  }")
    for step in ws.steps:
        if step.id not in in_phase:
            lines.append(f"  {_q(step.id)};")
    for step in ws.steps:
        for dep in step.requires:
            lines.append(f"  {_q(dep)} -> {_q(step.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_graph(ws: Workstream, fmt: str = "mermaid") -> str | bytes:
    """The dependency graph as Mermaid/DOT text, or SVG/PNG bytes made by Graphviz `dot`."""
    if fmt == "mermaid":
        return to_mermaid(ws)
    if fmt == "dot":
        return to_dot(ws)
    if fmt not in FORMATS:
        raise UserInputError(f"unknown graph format {fmt!r}; use one of {', '.join(FORMATS)}")
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing(INSTALL_HINT)
    done = subprocess.run(
        [program, f"-T{fmt}"], input=to_dot(ws).encode(), capture_output=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise UserInputError(f"Graphviz dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
