"""The names of a run's branches and worktrees, made from its run id and step ids.

A step id is any non-empty string in a workstream file, so it is never used as it is: a step id
that is already a plain name (letters, digits, `_`, `-`, single dots inside) is kept, any other is
replaced by a cleaned form plus a hash of the id, so two ids never share a name, and no name can
start with `-` (an option) or `.`, hold `..`, `/`, a space or anything a branch or a folder cannot.

Branch layout: the run's integration branch is `stepledger/<run>`; a step's branch is
`stepledger-steps/<run>/<step>`. Git stores branches as files, so `stepledger/<run>` could not also
be the folder of `stepledger/<run>/<step>`: the steps live in a namespace of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN_PREFIX = "stepledger/"
STEP_PREFIX = "stepledger-steps/"
WORKTREES_DIR = ".worktrees"
RUN_WORKTREE = ".run"  # the integration branch's own worktree; no step's name starts with a dot
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_MAX_PLAIN = 80


def plain_name(text: str) -> bool:
    """Whether `text` can be a branch component and a folder name as it is."""
    return bool(_PLAIN.fullmatch(text)) and not text.endswith(".lock") and len(text) <= _MAX_PLAIN


def step_slug(step_id: str) -> str:
    """The name a step's branch and folder use: the id itself when plain, else a cleaned, hashed form."""
    if plain_name(step_id):
        return step_id
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", step_id).strip("-_")[:40] or "step"
    import hashlib  # here: most step ids are plain, and hashlib loads OpenSSL

    digest = hashlib.sha256(step_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned}-{digest}"


@dataclass(frozen=True)
class RunNames:
    """Where one run's worktrees live and what its branches are called."""

    toplevel: Path  # the root of the repository's main working tree
    run_id: str

    @property
    def run_branch(self) -> str:
        """The integration branch: every passed step's work, merged in completion order."""
        return f"{RUN_PREFIX}{self.run_id}"

    @property
    def root(self) -> Path:
        """The folder of the run's worktrees: `<repo>/.worktrees/<run>`."""
        return self.toplevel / WORKTREES_DIR / self.run_id

    @property
    def run_worktree(self) -> Path:
        """The worktree that has the integration branch checked out (merges happen there)."""
        return self.root / RUN_WORKTREE

    def step_branch(self, step_id: str) -> str:
        """The branch of a step's attempts."""
        return f"{STEP_PREFIX}{self.run_id}/{step_slug(step_id)}"

    def step_worktree(self, step_id: str) -> Path:
        """The worktree of a step's attempts."""
        return self.root / step_slug(step_id)
