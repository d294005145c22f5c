"""`stepledger validate | plan | graph | schema` run as the installed command, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "workstreams"
SEED = EXAMPLES / "ws-example-02-parallel-execution.json"
BIN = Path(sys.executable).with_name("stepledger")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the stepledger command; fall back to `python -m stepledger.cli` if the script is missing."""
    command = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "stepledger.cli"]
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_validate_every_example_exits_0() -> None:
    files = [str(p) for p in sorted(EXAMPLES.iterdir()) if p.is_file()] + [
        str(ROOT / "examples/parallel-utilities.json")
    ]
    done = run("validate", *files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok: ") == len(files)
    assert "ok: " + str(SEED) + " (ws-example-02-parallel-execution: 3 steps, 0 dependencies)" in done.stdout


def test_validate_warns_about_missing_tools_but_passes() -> None:
    done = run("validate", str(SEED), env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0
    assert "warning: " in done.stderr and "tool `aider` is not available here" in done.stderr


def test_validate_verbose_lists_fields_not_acted_on() -> None:
    done = run("validate", "--verbose", str(SEED))
    assert done.returncode == 0
    for name in ("openspec_change", "ccpm_issue", "gate", "files_create", "doc_id"):
        assert f"  not acted on: {name}" in done.stdout


def test_validate_invalid_file_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "id": "w",
                "steps": [
                    {"id": "step-01-math-utils", "tool": "shell", "timeout": 0},
                    {"id": "b", "tool": "shell", "depends_on": ["step-01-math-util"], "tols": 1},
                    {"id": "c", "tool": "shell", "depends_on": ["d"]},
                    {"id": "d", "tool": "shell", "depends_on": ["c"]},
                ],
                "execution": {"max_workers": 0},
            }
        )
    )
    done = run("validate", str(bad), str(SEED))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, done.stderr  # and `tols`, an unknown field, is a warning:
    assert (
        f"warning: {bad}: steps[1].tols [step b]: unknown field `tols` is ignored — did you mean `tool`?"
        in (done.stderr.splitlines())
    )
    assert (
        f"error: {bad}: steps[1].depends_on[0] [step b]: depends on unknown step `step-01-math-util`"
        " — did you mean `step-01-math-utils`?"
    ) in errors
    assert any("dependency cycle: c → d → c" in line for line in errors)
    assert any(f"{bad}: execution.max_workers" in line for line in errors)
    assert "ok: " + str(SEED) in done.stdout  # the valid file is still reported


def test_validate_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "id": "w",\n  "tool": "shell"\n  "tasks": []\n}\n')
    done = run("validate", str(bad))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {bad}:4:3: invalid JSON: Expecting ',' delimiter")


def test_validate_json_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: w\nsteps:\n  - id: a\n    tool: shell\n    depends_on: [zz]\n")
    done = run("validate", "--json", str(SEED), str(bad))
    assert done.returncode == 2
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["valid"] and first["steps"] == 3 and "doc_id" in first["not_acted_on"]
    assert not second["valid"]
    assert [p["path"] for p in second["problems"]] == ["steps[0].depends_on[0]"]


def test_plan_text_and_max_workers() -> None:
    done = run("plan", str(SEED))
    assert done.returncode == 0, done.stderr
    assert "wave 1" in done.stdout and "wave 2" not in done.stdout
    assert "67% saved" in done.stdout
    done = run("plan", str(SEED), "--max-workers", "1")
    assert "wave 3" in done.stdout and "0% saved" in done.stdout


def test_plan_json() -> None:
    done = run("plan", "--json", str(EXAMPLES / "ws-example-04-multi-phase.json"), env={"MAX_WORKERS": "2"})
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["worker_limit"] == 2 and data["steps"] == 5 and data["dependencies"] == 7
    assert data["critical_path"][0] == "step-01-models"


def test_plan_of_an_invalid_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "cycle.json"
    bad.write_text(json.dumps({"id": "w", "tool": "shell", "steps": [{"id": "a", "depends_on": ["a"]}]}))
    done = run("plan", str(bad))
    assert done.returncode == 2
    assert "dependency cycle: a → a" in done.stderr


def test_graph_mermaid_dot_and_output_file(tmp_path: Path) -> None:
    done = run("graph", str(SEED))
    assert done.returncode == 0 and done.stdout.startswith("flowchart TD")
    out = tmp_path / "g.dot"
    done = run("graph", str(SEED), "--format", "dot", "-o", str(out))
    assert done.returncode == 0 and out.read_text().startswith("digraph")


def test_graph_svg_without_graphviz_says_how_to_get_it(tmp_path: Path) -> None:
    # A PATH with python's own directory only: `dot` cannot be found there.
    done = run("graph", str(SEED), "--format", "svg", env={"PATH": str(Path(sys.executable).parent)})
    assert done.returncode == 2
    assert "apt-get install graphviz" in done.stderr


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed (optional renderer)")
def test_graph_png_with_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "dependency_graph.png"
    done = run("graph", str(SEED), "--format", "png", "-o", str(out))
    assert done.returncode == 0 and out.read_bytes().startswith(b"\x89PNG")


def test_schema_prints_the_json_schema() -> None:
    done = run("schema")
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["title"] == "stepledger workstream" and "steps" in schema["properties"]


def test_missing_file_exits_2() -> None:
    done = run("validate", "no-such-file.json")
    assert done.returncode == 2 and "no-such-file.json: no such file" in done.stderr
