"""Running `git`: always an argv list, never a shell string, in a fixed, predictable environment.

Every value that reaches git from a workstream (a step id, a run id) arrives here already turned
into a safe name (names.py) and checked with `git check-ref-format`; paths are absolute, so none
of them can be read as an option.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# Variables that would make git act on another repository or index than the one we name, or ask
# a terminal for anything.
_DROPPED = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
# The identity of stepledger's own commits when the repository has none configured (a fresh CI
# checkout, a test's repository); a configured identity is always kept.
FALLBACK_IDENTITY = ("stepledger", "stepledger@localhost")


class GitError(RuntimeError):
    """A git command failed; the message names the command and what git said."""

    def __init__(self, argv: Sequence[str], code: int, output: str) -> None:
        said = output.strip().splitlines()
        tail = said[-1] if said else f"exit {code}"
        words = [a for i, a in enumerate(argv) if a != "-c" and (i == 0 or argv[i - 1] != "-c")]
        super().__init__(f"git {' '.join(words[:2])} failed: {tail}")
        self.argv = list(argv)
        self.code = code
        self.output = output


def git_available() -> bool:
    """Whether a `git` program is on PATH."""
    return shutil.which("git") is not None


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_EDITOR="true", GIT_MERGE_AUTOEDIT="no")
    return env


def git(cwd: str | Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` in `cwd`; raise GitError on a non-zero exit when `check`."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=str(cwd),
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
    except OSError as error:  # the folder is gone (a worktree removed by hand), or git is
        raise GitError(args, 127, f"{cwd}: {error.strerror or error}") from None
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr or proc.stdout)
    return proc


def out(cwd: str | Path, *args: str) -> str:
    """The stripped standard output of `git ARGS` (GitError if it fails)."""
    return git(cwd, *args).stdout.strip()


def toplevel(path: str | Path) -> Path | None:
    """The root of the working tree holding `path`, or None when it is in no git repository."""
    if not git_available() or not Path(path).is_dir():
        return None
    proc = git(path, "rev-parse", "--show-toplevel", check=False)
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


def head_commit(cwd: str | Path, ref: str = "HEAD") -> str | None:
    """The commit `ref` names, or None (an unborn branch, a missing ref)."""
    proc = git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def valid_branch(cwd: str | Path, branch: str) -> bool:
    """Whether `branch` is a well-formed branch name (`git check-ref-format --branch`)."""
    if branch.startswith("-"):
        return False
    return git(cwd, "check-ref-format", f"refs/heads/{branch}", check=False).returncode == 0


def identity_args(cwd: str | Path) -> list[str]:
    """`-c user.name=… -c user.email=…` when the repository has no identity, else nothing."""
    if git(cwd, "config", "--get", "user.email", check=False).stdout.strip():
        return []
    name, email = FALLBACK_IDENTITY
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


def is_ancestor(cwd: str | Path, commit: str, of: str) -> bool:
    """Whether `commit` is reachable from `of` (already merged into it)."""
    return git(cwd, "merge-base", "--is-ancestor", commit, of, check=False).returncode == 0
