"""The git operations of an isolated run, each idempotent so that a resume can simply do it again.

- the integration branch is created once, from the checkout's HEAD, and checked out in the run's
  own worktree; a merge a crash interrupted there is aborted before anything else happens;
- a step's worktree is made fresh for every attempt: whatever is at its path or on its branch (a
  failed attempt's leftovers, a worktree half made when the orchestrator died) is removed first;
- committing a passed attempt commits only what is left uncommitted, so doing it twice commits once;
- merging a step's branch that the integration branch already contains makes no second merge.

The kill points (engine/run/kill_points.py) sit between the operations and their events, where the
crash suite kills the orchestrator.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..run import kill_points
from .git import GitError, git, head_commit, identity_args, is_ancestor, out
from .names import WORKTREES_DIR, RunNames

TRAILER_STEP = "Stepledger-Step"  # the merge commit's trailer naming the merged step (its slug)
TRAILER_RUN = "Stepledger-Run"


@dataclass(frozen=True)
class MergeOutcome:
    """What merging a step's branch did: a merge commit, nothing (already there), or a conflict."""

    merge_commit: str = ""
    conflict_files: list[str] = field(default_factory=list)

    @property
    def conflicted(self) -> bool:
        """Whether the merge was undone because of conflicts."""
        return bool(self.conflict_files)


def exclude_worktrees_dir(toplevel: Path) -> None:
    """Keep `.worktrees/` out of the checkout's `git status` (the repository's own exclude file)."""
    info = Path(out(toplevel, "rev-parse", "--git-path", "info/exclude"))
    info = info if info.is_absolute() else toplevel / info
    line = f"/{WORKTREES_DIR}/"
    text = info.read_text() if info.exists() else ""
    if line not in text.splitlines():
        info.parent.mkdir(parents=True, exist_ok=True)
        with info.open("a") as f:
            f.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")


def ensure_run_branch(names: RunNames) -> tuple[str, bool]:
    """Make the integration branch and its worktree if missing; (its base commit, whether made now)."""
    top = names.toplevel
    branch = names.run_branch
    exclude_worktrees_dir(top)
    made = False
    base = head_commit(top, f"refs/heads/{branch}")
    if base is None:
        base = head_commit(top)
        if base is None:
            raise GitError(["rev-parse", "HEAD"], 128, "the repository has no commit yet")
        git(top, "branch", "--no-track", branch, base)
        made = True
    wt = names.run_worktree
    if not _registered(top, wt):
        discard_worktree(top, wt)
        kill_points.reached("worktree_add")
        git(top, "worktree", "add", "--", str(wt), branch)
        kill_points.reached("after_worktree_add")
    abort_interrupted_merge(wt)
    return base, made


def abort_interrupted_merge(worktree: Path) -> bool:
    """Abort a merge a crash left half done in `worktree` and clean it; whether there was one."""
    merging = git(worktree, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode == 0
    if merging:
        git(worktree, "merge", "--abort", check=False)
    # Only stepledger writes in the run's worktree: anything uncommitted there is a crash's leftover.
    git(worktree, "reset", "-q", "--hard", "HEAD")
    return merging


def discard_worktree(top: Path, path: Path, branch: str | None = None) -> None:
    """Remove the worktree at `path` (registered or half made) and, if given, its branch."""
    removed = False
    if _registered(top, path):
        removal = git(top, "worktree", "remove", "--force", "--force", "--", str(path), check=False)
        removed = removal.returncode == 0
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    if not removed:  # git's record of a worktree whose folder went some other way
        git(top, "worktree", "prune")
    if branch and head_commit(top, f"refs/heads/{branch}") is not None:
        git(top, "branch", "-D", "--", branch)


def fresh_step_worktree(names: RunNames, step_id: str) -> tuple[Path, str, str]:
    """A new worktree for an attempt of `step_id`, from the integration branch's head now.

    Returns (path, branch, base commit).
    """
    top = names.toplevel
    path, branch = names.step_worktree(step_id), names.step_branch(step_id)
    base = head_commit(top, f"refs/heads/{names.run_branch}")
    if base is None:
        raise GitError(
            ["rev-parse", names.run_branch], 128, f"the integration branch {names.run_branch} is gone"
        )
    discard_worktree(top, path, branch)
    path.parent.mkdir(parents=True, exist_ok=True)
    kill_points.reached("worktree_add")
    git(top, "worktree", "add", "-b", branch, "--", str(path), base)
    kill_points.reached("after_worktree_add")
    return path, branch, base


def commit_all(worktree: Path, message: str) -> str:
    """Commit whatever is uncommitted in `worktree` (nothing: no commit); the resulting head commit."""
    kill_points.reached("before_commit")
    git(worktree, "add", "-A")
    if git(worktree, "diff", "--cached", "--quiet", check=False).returncode != 0:
        git(worktree, *identity_args(worktree), "commit", "-q", "--no-verify", "-m", message)
    kill_points.reached("after_commit")
    return _must(head_commit(worktree), worktree, "HEAD")


def changed_files(cwd: Path, base: str, commit: str) -> list[str]:
    """The files that differ between two commits."""
    if base == commit:
        return []
    return [line for line in out(cwd, "diff", "--name-only", "-z", base, commit).split("\0") if line]


def merge_step(names: RunNames, step_commit: str, message: str) -> MergeOutcome:
    """Merge `step_commit` into the integration branch in its worktree; a conflict undoes the merge."""
    wt = names.run_worktree
    run_head = _must(head_commit(wt), wt, names.run_branch)
    if is_ancestor(wt, step_commit, run_head):
        return MergeOutcome(merge_commit=_merge_commit_of(wt, step_commit) or "")
    abort_interrupted_merge(wt)
    proc = git(wt, "merge", "--no-ff", "--no-commit", "-q", step_commit, check=False)
    if proc.returncode != 0:
        files = [f for f in out(wt, "diff", "--name-only", "-z", "--diff-filter=U").split("\0") if f]
        abort_interrupted_merge(wt)
        if not files:
            raise GitError(["merge", step_commit], proc.returncode, proc.stderr or proc.stdout)
        return MergeOutcome(conflict_files=files)
    kill_points.reached("in_merge")
    git(wt, *identity_args(wt), "commit", "-q", "--no-verify", "-m", message)
    kill_points.reached("after_merge")
    return MergeOutcome(merge_commit=_must(head_commit(wt), wt, "HEAD"))


def merge_message(run_id: str, step_label: str, slug: str, attempt: int) -> str:
    """The integration branch's merge commit message, with trailers naming run and step."""
    return (
        f"stepledger: merge step {step_label} (run {run_id}, attempt {attempt})\n\n"
        f"{TRAILER_RUN}: {run_id}\n{TRAILER_STEP}: {slug}\n"
    )


def merged_since(names: RunNames, base: str) -> list[tuple[str, list[str]]]:
    """(step slug, files it changed) of every step merged into the integration branch after `base`."""
    wt = names.run_worktree
    # Not `out`: str.strip() counts the separators \x1e and \x1f as white space.
    text = git(
        wt, "log", "--first-parent", "--merges", "--diff-merges=first-parent", "--name-only", "-z",
        f"--format=%x1e%(trailers:key={TRAILER_STEP},valueonly,separator=%x2c)%x1f",
        f"{base}..HEAD",
    ).stdout  # fmt: skip
    merged: list[tuple[str, list[str]]] = []
    for chunk in text.split("\x1e")[1:]:
        slug, _, names_part = chunk.partition("\x1f")
        files = [f.strip("\n") for f in names_part.split("\0") if f.strip("\n")]
        merged.append((slug.strip(), files))
    return merged


def merge_into(names: RunNames, target: str, message: str) -> tuple[str, str, list[str]]:
    """Bring the integration branch into branch `target`: (target's head after, how, conflicting files).

    A branch that does not exist is created; one that is behind is fast-forwarded; otherwise the
    integration branch is merged into it, where it is checked out (the main checkout, say) or, if
    nowhere, in the run's worktree. A conflict undoes the merge and leaves `target` as it was.
    """
    top = names.toplevel
    run_head = _must(head_commit(top, f"refs/heads/{names.run_branch}"), top, names.run_branch)
    ref = f"refs/heads/{target}"
    current = head_commit(top, ref)
    if current is None:
        git(top, "update-ref", ref, run_head, "0" * len(run_head))
        return run_head, "created", []
    if is_ancestor(top, run_head, current):
        return current, "up_to_date", []
    where = checked_out_at(top, target)
    if where is None and is_ancestor(top, current, run_head):
        git(top, "update-ref", ref, run_head, current)
        return run_head, "fast_forward", []
    switched = where is None
    if where is None:
        where = names.run_worktree
        git(where, "checkout", "-q", target)
    try:
        args = ("--ff-only",) if is_ancestor(where, current, run_head) else ("--no-ff", "-m", message)
        proc = git(where, *identity_args(where), "merge", "-q", *args, run_head, check=False)
        if proc.returncode != 0:
            files = [f for f in out(where, "diff", "--name-only", "-z", "--diff-filter=U").split("\0") if f]
            git(where, "merge", "--abort", check=False)
            if not files:
                raise GitError(["merge", target], proc.returncode, proc.stderr or proc.stdout)
            return current, "conflict", files
        kill_points.reached("after_merge_into")
        head = _must(head_commit(where), where, "HEAD")
        return head, "fast_forward" if args[0] == "--ff-only" else "merge", []
    finally:
        if switched:
            git(where, "checkout", "-q", names.run_branch, check=False)


def checked_out_at(top: Path, branch: str) -> Path | None:
    """The worktree (the main checkout included) that has `branch` checked out, if any."""
    for entry in list_worktrees(top):
        if entry.get("branch") == f"refs/heads/{branch}":
            return Path(entry["worktree"])
    return None


def list_worktrees(top: Path) -> list[dict[str, str]]:
    """`git worktree list --porcelain`, one dict per worktree (keys: worktree, HEAD, branch, ...)."""
    entries: list[dict[str, str]] = []
    for block in out(top, "worktree", "list", "--porcelain", "-z").split("\0\0"):
        entry: dict[str, str] = {}
        for line in block.split("\0"):
            key, _, value = line.partition(" ")
            if key:
                entry[key] = value
        if entry:
            entries.append(entry)
    return entries


def _registered(top: Path, path: Path) -> bool:
    resolved = path.resolve() if path.exists() else path
    return any(Path(e["worktree"]) in (path, resolved) for e in list_worktrees(top))


def _merge_commit_of(cwd: Path, step_commit: str) -> str | None:
    """The integration branch's commit that merged `step_commit` (None: it was there already)."""
    text = out(cwd, "rev-list", "--first-parent", "--parents", "--ancestry-path", f"{step_commit}..HEAD")
    for line in reversed(text.splitlines()):
        commit, *parents = line.split()
        if len(parents) > 1 and step_commit in parents[1:]:
            return commit
    return None


def _must(commit: str | None, where: Path, what: str) -> str:
    """`commit`, or GitError when git names none (a branch deleted by hand, a HEAD gone unborn)."""
    if commit is None:
        raise GitError(["rev-parse", what], 128, f"{what} names no commit in {where}")
    return commit
