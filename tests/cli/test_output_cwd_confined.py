"""A step's cwd filled from another step's output stays inside the run's folder.

An output is data a step wrote; `cwd: "${steps.a.outputs.dir}"` may name a folder below the
project's, never make the step run (and stepledger create folders) elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from failure_scripts import cli, only_run_id, write_workstream, writes_outputs

from stepledger.store.connect import open_store


def _workstream(tmp_path: Path, folder: str) -> Path:
    return write_workstream(tmp_path, {"id": "cwd", "steps": [
        {"id": "a", "tool": "shell", "tasks": [writes_outputs(dir=folder)]},
        {"id": "b", "tool": "shell", "depends_on": ["a"], "cwd": "${steps.a.outputs.dir}",
         "tasks": ["pwd > here.txt"]},
    ]})  # fmt: skip


@pytest.mark.parametrize("folder", ["../escaped", "/tmp/stepledger-escaped-cwd", "sub/../../escaped"])
def test_an_output_that_leaves_the_run_folder_fails_the_step(
    tmp_path: Path, sqlite_url: str, folder: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = cli("run", str(_workstream(project, folder)), cwd=project, db=sqlite_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/stepledger-escaped-cwd").exists()
    (log,) = (project / ".stepledger" / "runs").glob("*/b.1.log")
    assert "leaves the run's folder" in log.read_text()
    store = open_store(sqlite_url)
    try:
        run = store.run_state(only_run_id(sqlite_url, project))
    finally:
        store.close()
    assert run is not None and run.step("b").state in ("failed", "tripped")


def test_an_output_naming_a_folder_inside_is_used(tmp_path: Path, sqlite_url: str) -> None:
    done = cli("run", str(_workstream(tmp_path, "out/../build")), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "build" / "here.txt").read_text().strip() == str(tmp_path / "build")
