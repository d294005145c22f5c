"""Graph drawings and the plan's text."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stepledger.engine.errors import UserInputError
from stepledger.engine.workstream import (
    GraphvizMissing,
    format_duration,
    format_plan,
    load_workstream,
    plan,
    render_graph,
)

ROOT = Path(__file__).resolve().parents[2]
MULTI = ROOT / "tests/workstreams/ws-example-04-multi-phase.json"
SEED = ROOT / "tests/workstreams/ws-example-02-parallel-execution.json"


def test_mermaid_has_every_step_edge_and_phase() -> None:
    ws = load_workstream(MULTI, env={})
    text = render_graph(ws, "mermaid")
    assert isinstance(text, str) and text.startswith("flowchart TD\n")
    assert 'subgraph p0["Foundation"]' in text
    for i, step in enumerate(ws.steps):
        assert f's{i}["{step.id}"]' in text
    edges = sum(len(s.requires) for s in ws.steps)
    assert text.count(" --> ") == edges
    assert "  s2 --> s3" in text  # extract → transform


def test_dot_is_quoted_and_clustered() -> None:
    ws = load_workstream(MULTI, env={})
    text = render_graph(ws, "dot")
    assert isinstance(text, str)
    assert text.startswith('digraph "ws-example-04-multi-phase" {')
    assert '"step-03-extract" -> "step-04-transform";' in text
    assert "subgraph cluster_0 {" in text and 'label="Foundation";' in text


def test_svg_without_graphviz_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ws = load_workstream(SEED, env={})
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for fmt in ("svg", "png"):
        with pytest.raises(GraphvizMissing, match="apt-get install graphviz"):
            render_graph(ws, fmt)


def test_unknown_format() -> None:
    with pytest.raises(UserInputError, match="mermaid, dot, svg, png"):
        render_graph(load_workstream(SEED, env={}), "gif")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed (optional renderer)")
def test_svg_and_png_with_graphviz() -> None:
    ws = load_workstream(MULTI, env={})
    svg = render_graph(ws, "svg")
    assert isinstance(svg, bytes) and b"<svg" in svg and b"extract" in svg  # dot writes "-" as &#45;
    png = render_graph(ws, "png")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    assert subprocess.run(["dot", "-V"], capture_output=True, check=False).returncode == 0


def test_plan_text() -> None:
    text = format_plan(plan(load_workstream(MULTI, env={})))
    assert "ws-example-04-multi-phase: 5 steps, 7 dependencies, up to 3 at once" in text
    assert "durations: 5 from file" in text
    assert (
        "critical path (8m 00s): step-01-models → step-03-extract → step-04-transform → step-05-load" in text
    )
    assert "expected: 8m 00s in parallel vs 9m 00s one after another — 11% saved (1m 00s)" in text


def test_duration_formats() -> None:
    assert format_duration(3, "unit") == "3 units"
    assert format_duration(1, "unit") == "1 unit"
    assert format_duration(12.34, "s") == "12.3s"
    assert format_duration(181, "s") == "3m 01s"
    assert format_duration(3725, "s") == "1h 02m 05s"
