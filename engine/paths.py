"""Where a run's files live (apart from session/runs.py, so read commands need not import the reactor)."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700  # a run's folder holds its steps' output and logs: the user's alone


def run_dir_of(workdir: str | Path, run_id: str) -> Path:
    """The folder holding a run's logs and attempt files."""
    return Path(workdir) / ".stepledger" / "runs" / run_id


def compensation_dir(run_dir: str | Path) -> Path:
    """The folder holding the attempt files of a run's compensations."""
    return Path(run_dir) / "compensations"


def make_run_dir(run_dir: str | Path) -> Path:
    """Create `run_dir` (`.stepledger/runs/<run>`) and the folders above it, each 0700.

    The mode is given to each mkdir rather than set through the umask, which the steps would inherit
    (their own files keep the user's umask). Folders that exist with wider modes (made by an older
    version) are narrowed, if they are the user's; `.stepledger` itself is created here when the log
    lives elsewhere (PostgreSQL), and its mode is otherwise the store's to set.
    """
    run_dir = Path(run_dir)
    runs = run_dir.parent
    runs.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    for folder in (runs, run_dir):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        _narrow(folder, PRIVATE_DIR)
    return run_dir


def _narrow(path: Path, mode: int) -> None:
    """Take away the group's and others' permissions on `path` if it has any and is ours."""
    st = path.stat()
    if st.st_mode & 0o777 & ~mode and st.st_uid == os.geteuid():
        os.chmod(path, mode)


def hostname() -> str:
    """This machine's name, as leases and attempts record it (what `socket.gethostname()` says,
    without importing the socket module on the way to a run's first step); STEPLEDGER_HOSTNAME
    overrides it, for several workers on one machine standing for several machines."""
    return os.environ.get("STEPLEDGER_HOSTNAME") or os.uname().nodename
