"""What a run needs, checked before its first event is appended, so bad input records nothing.

A run whose folder cannot be written, whose worker count is absurd, or one of whose steps names a
folder no file system can hold, used to fail after `run.started` was in the log, leaving a run
`running` forever. Each check here raises `RunSetupError` (one line, exit 2) instead.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunNotFound, UserInputError
from ..workstream.limits import MAX_WORKERS, NAME_MAX_BYTES, PATH_MAX_BYTES

# A run checks its inputs before its pool starts; the event classes, the store's port and OpenSSL
# (hashlib) are not needed for that, and importing them later lets the workers boot meanwhile.
if TYPE_CHECKING:
    from stepledger.events.state import RunState
    from stepledger.store.port import EventStore

    from ..workstream.model import Workstream


class RunSetupError(UserInputError):
    """Something the run needs is missing or unusable; the message names it and how to fix it."""


def new_run_id(now: float | None = None) -> str:
    """A sortable, unique run id: `run-20261128-140212-3f9a`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now or time.time()))
    return f"run-{stamp}-{os.urandom(2).hex()}"  # what secrets.token_hex(2) returns


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (how a changed workstream file is noticed on resume)."""
    try:  # the built-in SHA-256, the same digest without loading OpenSSL
        from _sha256 import sha256
    except ImportError:  # renamed in Python 3.12
        from hashlib import sha256
    return sha256(Path(path).read_bytes()).hexdigest()


def load_run(store: EventStore, run_id: str) -> RunState:
    """The folded state of `run_id`; RunNotFound if the log has no such run."""
    from stepledger.events.state import fold

    run = fold(run_id, store.read_run(run_id))
    if run.started_at is None:
        raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
    return run


def workstream_file_changed(run: RunState) -> bool:
    """Whether the run's workstream file differs from the one recorded when the run started."""
    path = Path(run.source_path)
    return bool(run.workstream_hash) and path.is_file() and file_hash(path) != run.workstream_hash


def check_max_workers(value: int | None, where: str = "--max-workers") -> None:
    """Refuse a worker count outside 1..MAX_WORKERS (each worker is a process)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise RunSetupError(f"{where} must be an integer from 1 to {MAX_WORKERS}, got {value!r}")


def check_run_inputs(workstream: Workstream, workdir: str | Path, max_workers: int | None = None) -> None:
    """Everything a run of `workstream` in `workdir` needs, before anything is recorded."""
    check_max_workers(max_workers)
    check_max_workers(workstream.execution.max_workers, "execution.max_workers")
    for group in workstream.step_groups:
        if group.max_workers is not None:
            check_max_workers(group.max_workers, f"step group {group.id!r}: max_workers")
    workdir = Path(workdir)
    seen: set[str] = set()
    for step in workstream.steps:
        if step.cwd and step.cwd not in seen:
            seen.add(step.cwd)
            problem = cwd_problem(workdir, step.cwd)
            if problem:
                raise RunSetupError(f"step {step.id}: cwd {problem}")
    check_runs_folder(workdir)


def check_runs_folder(workdir: Path) -> None:
    """`.stepledger/runs` exists (made 0700 if not) and this user can write into it."""
    runs = workdir / ".stepledger" / "runs"
    for folder in (runs.parent, runs):
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except FileExistsError:
            raise RunSetupError(f"{folder} is not a folder: move that file away, then run again") from None
        except OSError as error:
            raise RunSetupError(f"cannot create {folder}: {error.strerror or error}") from None
    if not os.access(runs, os.W_OK | os.X_OK):
        raise RunSetupError(f"cannot write in {runs}: give your user write access to it (chmod u+rwx)")


def cwd_problem(workdir: Path, cwd: str) -> str | None:
    """Why the step folder `cwd` (relative to `workdir`) cannot be used or made, or None.

    The folder is made when the step first starts, so here nothing is created: the path must be
    one a file system can hold, and either be a folder or have a writable folder as its nearest
    existing parent.
    """
    if "\x00" in cwd:
        return "contains a NUL character"
    target = workdir / cwd
    try:
        encoded = os.fsencode(target)
    except UnicodeEncodeError:
        return "is not valid Unicode"
    if len(encoded) > PATH_MAX_BYTES:
        return f"is {len(encoded):,} bytes long as a path; the limit is {PATH_MAX_BYTES:,}"
    for name in target.parts:
        if len(os.fsencode(name)) > NAME_MAX_BYTES:
            return f"has a name of {len(os.fsencode(name)):,} bytes; a folder name holds {NAME_MAX_BYTES}"
    probe = target
    while True:
        try:
            if probe.is_dir():
                break
            if probe.exists():
                return f"goes through {probe}, which is a file, not a folder"
        except OSError as error:  # e.g. a name too long for this file system, a loop of symlinks
            return f"cannot be used: {os.strerror(error.errno or errno.EINVAL)}"
        if probe.parent == probe:
            return None
        probe = probe.parent
    if probe != target and not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot be created: {probe} is not writable"
    return None
