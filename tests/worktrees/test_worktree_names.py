"""Step ids become branch and folder names that git accepts and that can never be options or paths out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stepledger.engine.worktrees.isolation import fill_runtime
from stepledger.engine.worktrees.names import RunNames, step_slug

ODD_IDS = [
    "--upload-pack=touch x",
    "-b",
    "../../etc",
    "a b",
    "x.lock",
    ".hidden",
    "a..b",
    "ü",
    "a/b",
    "@{-1}",
    "x" * 200,
]


def valid_ref(name: str) -> bool:
    done = subprocess.run(["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("step_id", ["build", "test-3.11", "phase_1.lint", "A9"])
def test_a_plain_id_is_its_own_name(step_id: str) -> None:
    assert step_slug(step_id) == step_id


@pytest.mark.parametrize("step_id", ODD_IDS)
def test_any_other_id_becomes_a_safe_hashed_name(step_id: str, tmp_path: Path) -> None:
    slug = step_slug(step_id)
    assert slug != step_id
    assert slug[0].isalnum() and "/" not in slug and ".." not in slug and len(slug) <= 60
    names = RunNames(tmp_path, "run-1")
    assert valid_ref(names.step_branch(step_id)) and valid_ref(names.run_branch)
    assert names.step_worktree(step_id).parent == tmp_path / ".worktrees" / "run-1"


def test_ids_that_clean_to_the_same_text_get_different_names() -> None:
    slugs = {step_slug(i) for i in ("a b", "a/b", "a:b", "a-b")}
    assert len(slugs) == 4


def test_only_the_three_placeholders_are_filled() -> None:
    values = {"worktree_path": "/w", "run_branch": "r", "step_branch": "s"}
    text = "${worktree_path}/x ${ run_branch } ${step_branch} ${env.HOME} ${steps.a.outputs.b} $HOME"
    assert fill_runtime(text, values) == "/w/x r s ${env.HOME} ${steps.a.outputs.b} $HOME"
