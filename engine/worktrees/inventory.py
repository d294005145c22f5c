"""The worktrees runs left in a repository (failed steps, unfinished runs), found and pruned.

Found by asking git (`git worktree list`), not the log: a worktree is stepledger's when it lies
at `<repo>/.worktrees/<run>/<name>`. Pruning removes those worktrees and the runs' step branches;
it never deletes an integration branch `stepledger/<run>`: that is the run's combined work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import operations as ops
from .git import git, out, toplevel
from .isolation import IsolationSetupError
from .names import STEP_PREFIX, WORKTREES_DIR


@dataclass(frozen=True)
class KeptWorktree:
    """One worktree of a run: its run, its folder's name (a step's, or `.run`), path, branch, head."""

    run_id: str
    name: str
    path: str
    branch: str  # empty when detached
    head: str


def repository_of(workdir: str | Path) -> Path:
    """The root of the repository holding `workdir`; IsolationSetupError if it is in none."""
    top = toplevel(workdir)
    if top is None:
        raise IsolationSetupError(f"{Path(workdir).resolve()} is in no git repository: run this inside one")
    return top


def found_worktrees(top: Path, run_id: str | None = None) -> list[KeptWorktree]:
    """Every stepledger worktree registered in the repository at `top` (of `run_id` only, if given)."""
    base = (top / WORKTREES_DIR).resolve()
    found = []
    for entry in ops.list_worktrees(top):
        path = Path(entry["worktree"])
        if path.parent.parent.resolve() != base:
            continue
        run = path.parent.name
        if run_id is not None and run != run_id:
            continue
        branch = entry.get("branch", "").removeprefix("refs/heads/")
        found.append(KeptWorktree(run, path.name, str(path), branch, entry.get("HEAD", "")))
    return sorted(found, key=lambda w: (w.run_id, w.name))


def prune(top: Path, worktrees: list[KeptWorktree], run_ids: set[str]) -> list[KeptWorktree]:
    """Remove `worktrees`, then the step branches and empty folders of `run_ids`; the removed ones."""
    removed = []
    for worktree in worktrees:
        branch = worktree.branch if worktree.branch.startswith(STEP_PREFIX) else None
        ops.discard_worktree(top, Path(worktree.path), branch)
        removed.append(worktree)
    for run_id in sorted(run_ids):
        refs = out(top, "for-each-ref", "--format=%(refname)", f"refs/heads/{STEP_PREFIX}{run_id}/")
        for ref in refs.splitlines():
            git(top, "update-ref", "-d", ref)
        folder = top / WORKTREES_DIR / run_id
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed
