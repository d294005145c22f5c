"""Helpers of the worktree tests: real git repositories, `stepledger` as a subprocess, the log read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from stepledger.events.state import RunState, fold
from stepledger.store.connect import open_store

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip


def git(repo: Path, *args: str, check: bool = True) -> str:
    """`git ARGS` in `repo`; its standard output."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}, check=False)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A git repository at `path` with one commit on `main` holding `files`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in (files or {"README.md": "hello\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def write_workstream(repo: Path, steps: list[dict[str, Any]], **execution: Any) -> Path:
    """`ws.json` beside the repository (outside it, so the checkout stays clean)."""
    body = {"id": "ws-wt", "execution": {"max_workers": 3, **execution}, "steps": steps}
    path = repo.parent / f"{repo.name}-ws.json"
    path.write_text(json.dumps(body, indent=1))
    return path


def stepledger(*args: str, cwd: Path, db: Path, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`stepledger ARGS` as a subprocess in `cwd`, on the SQLite log `db`."""
    full = {**os.environ, "STEPLEDGER_DB": f"sqlite:///{db}", **(env or {})}
    full.pop("STEPLEDGER_KILL_AT", None)
    return subprocess.run([sys.executable, "-m", "stepledger.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full, stdin=subprocess.DEVNULL)  # fmt: skip


def run_ids(db: Path) -> list[str]:
    """The runs of the log (none when it does not exist)."""
    if not db.exists():
        return []
    store = open_store(f"sqlite:///{db}")
    try:
        return list(store.run_ids())
    finally:
        store.close()


def events(db: Path, run_id: str, type_name: str | None = None, step_id: str | None = None) -> list[Any]:
    """The run's recorded events (of one type, of one step)."""
    store = open_store(f"sqlite:///{db}")
    try:
        return [
            e
            for e in store.read_run(run_id)
            if (type_name is None or e.type == type_name) and (step_id is None or e.step_id == step_id)
        ]
    finally:
        store.close()


def state(db: Path, run_id: str) -> RunState:
    """The run folded from its log."""
    return fold(run_id, events(db, run_id))


def only_run(db: Path) -> str:
    """The id of the one run in the log."""
    ids = run_ids(db)
    assert len(ids) == 1, ids
    return ids[0]


def files_on(repo: Path, ref: str) -> set[str]:
    """The files of commit `ref`."""
    return set(git(repo, "ls-tree", "-r", "--name-only", ref).split())


def worktree_paths(repo: Path) -> list[str]:
    """The registered worktrees of `repo`, the main checkout first."""
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]  # fmt: skip
