"""A step's changed files against its `files_scope`: the post-run check only worktrees make possible.

`files_scope` entries are paths relative to the step's `cwd` (as its tool sees them), the same as
the pre-run check of concurrent steps reads them (engine/workstream/rules.py). Changed files come
from git, relative to the repository's root. An entry names a file, or a folder and everything in
it. A step without `files_scope` declares nothing and is not checked.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from pathlib import PurePosixPath


def scope_roots(files_scope: Iterable[str], rel: PurePosixPath, cwd: str | None) -> list[str]:
    """The scope's entries as paths from the repository's root (`rel`: the run's folder in it)."""
    roots = []
    for entry in files_scope:
        joined = posixpath.join(str(rel), cwd or "", entry.replace("\\", "/"))
        roots.append(posixpath.normpath(joined).lstrip("/"))
    return roots


def outside_scope(changed: Iterable[str], roots: list[str]) -> list[str]:
    """The changed files that no scope entry covers (all of them are fine when `roots` is empty)."""
    if not roots:
        return []
    return [
        path for path in changed if not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)
    ]
