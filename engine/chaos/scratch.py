"""The scratch copies a chaos run works in: never the user's working directory itself.

Each iteration gets `SCRATCH/iteration-NNN/` (the uninterrupted run `SCRATCH/baseline/`) holding
`work/` (the copy of the working directory, where the steps run), the run's SQLite log, the
side-effect log and each process's output. Folders are 0700 and files 0600: a step's output may
hold anything. What is never copied: stepledger's own `.stepledger/` (earlier runs and their log),
version control, virtual environments and caches — a copy per iteration of those would be slow and
no step should need a private copy of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .plan import ChaosInputError

NOT_COPIED = (
    ".stepledger",
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".tox",
    ".hypothesis",
)
MAX_FILES = 20_000
MAX_BYTES = 500 << 20
PRIVATE_DIR = 0o700


def default_scratch() -> Path:
    """A new private folder under the system's temporary folder (not yet created)."""
    return Path(tempfile.gettempdir()) / f"stepledger-chaos-{os.getpid()}-{os.urandom(3).hex()}"


def check_places(workdir: Path, scratch: Path) -> None:
    """Refuse a working directory that is missing, too large to copy, or holds the scratch folder."""
    if not workdir.is_dir():
        raise ChaosInputError(f"--workdir {workdir}: not a folder; give the folder your steps run in")
    if scratch == workdir or workdir in scratch.parents:
        raise ChaosInputError(
            f"--scratch {scratch} is inside the working directory {workdir}, which is copied into it; "
            "give --scratch a folder outside it"
        )
    if scratch.is_symlink() or (scratch.exists() and (not scratch.is_dir() or any(scratch.iterdir()))):
        raise ChaosInputError(
            f"--scratch {scratch} exists and is not an empty folder; give a new or empty one"
        )
    files, size = 0, 0
    for root, dirs, names in os.walk(workdir):
        dirs[:] = [d for d in dirs if d not in NOT_COPIED]
        files += len(names)
        size += sum(_size(Path(root) / n) for n in names)
        if files > MAX_FILES or size > MAX_BYTES:
            raise ChaosInputError(
                f"the working directory {workdir} holds more than {MAX_FILES:,} files or "
                f"{MAX_BYTES >> 20} MB, copied for every iteration; "
                "point --workdir at the folder your steps need"
            )


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def open_scratch(scratch: Path) -> bool:
    """Create the scratch folder (0700), or take the empty one the user gave; whether it was created.

    Created exclusively: a folder someone else made at that path in the meantime is refused.
    """
    try:
        scratch.mkdir(mode=PRIVATE_DIR, parents=True)
    except FileExistsError:
        check = scratch.lstat()
        if scratch.is_symlink() or check.st_uid != os.geteuid() or any(scratch.iterdir()):
            raise ChaosInputError(
                f"--scratch {scratch} is not an empty folder of yours; give a new one"
            ) from None
        return False
    return True


def make_private(folder: Path) -> Path:
    """Create `folder` (and missing parents) with mode 0700."""
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(folder, PRIVATE_DIR)
    return folder


def copy_workdir(workdir: Path, into: Path) -> Path:
    """Copy `workdir` to `into/work` (symlinks stay links) and return the copy."""
    target = into / "work"
    shutil.copytree(workdir, target, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    return target


def remove(folder: Path) -> None:
    """Remove a scratch folder and everything in it (a step may have left read-only files)."""
    shutil.rmtree(folder, ignore_errors=True)
