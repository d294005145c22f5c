"""Per-attempt file names and small helpers shared by the worker, the pool and recovery.

This module is imported by the worker process, so it must stay cheap to import: standard library
modules that the interpreter loads anyway, nothing of ours, no dataclasses.

Files of attempt N of step S in the run directory (`.stepledger/runs/<run_id>/`):

    <S>.<N>.log           all output of the tool and the acceptance tests, with `$ cmd` / `exit 0 in 0.5s`
    <S>.<N>.result.json   the AttemptResult, written (under the lock) before it is reported
    <S>.<N>.outputs.json  STEPLEDGER_OUTPUTS: the step may write {"name": value} here

and in the run's lock folder (`lock_dir`), on tmpfs where the machine has one:

    <S>.<N>.lock          flock held while the attempt (or any process it started) is alive; JSON content

A lock only means something while processes live, so it need not survive a reboot — and on a
busy disk every file created costs a journal commit (docs/performance.md), which dominated
the per-step cost of short steps. Keyed by the run directory's absolute path, the lock folder is
the same for every process of this machine that looks at the run; its `run_dir` file names that
directory, so that `sweep_lock_dirs` can tell the folders of runs whose directory is gone.
"""

from __future__ import annotations

import os
import re
import stat
import zlib

try:
    # The built-in SHA-1, the same digest: hashlib's import loads OpenSSL, a visible part of a
    # worker's start-up (docs/performance.md).
    from _sha1 import sha1 as _sha1
except ImportError:  # an interpreter without it
    from hashlib import sha1 as _sha1

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(step_id: str) -> str:
    """The file-name form of a step id; ids that needed changing get a checksum so they stay distinct."""
    safe = _UNSAFE.sub("_", step_id)
    if safe == step_id and not safe.startswith(".") and 0 < len(safe) <= 120:
        return safe
    # A crc of the original keeps "a/b" and "a_b" apart after both became "a_b".
    return f"{safe.lstrip('.')[:100] or 'step'}-{zlib.crc32(step_id.encode()):08x}"


def attempt_base(run_dir: str, step_id: str, attempt: int) -> str:
    """The common path prefix of one attempt's files (append `.log`, `.lock`, ...)."""
    return os.path.join(run_dir, f"{safe_name(step_id)}.{attempt}")


def log_path(run_dir: str, step_id: str, attempt: int) -> str:
    """Path of the attempt's output log."""
    return attempt_base(run_dir, step_id, attempt) + ".log"


_SHM = "/dev/shm"


def lock_root() -> str | None:
    """This user's folder of lock folders on tmpfs, None when /dev/shm is not usable or not safe.

    /dev/shm is shared by every local user, and the folder's name is predictable: another user
    could make it first (and read or replace our locks) or plant a symlink there. It is used only
    when it is a real directory that this user owns and nobody else can write to; otherwise the
    lock files live in the run directories, as on a machine without tmpfs. Every process of a run
    makes the same check, so they agree on where the locks are.
    """
    if not (os.path.isdir(_SHM) and os.access(_SHM, os.W_OK)):
        return None
    root = os.path.join(_SHM, f"stepledger-{os.getuid()}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return root


def lock_dir(run_dir: str) -> str:
    """The folder of a run's lock files: under /dev/shm when it is usable, else the run directory."""
    root = lock_root()
    if root is None:
        return run_dir
    return os.path.join(root, _sha1(os.path.abspath(run_dir).encode()).hexdigest()[:20])


def lock_path(run_dir: str, step_id: str, attempt: int) -> str:
    """Path of the attempt's lock file (its folder is created on first use)."""
    folder = lock_dir(run_dir)
    if folder != run_dir:
        _make_lock_dir(folder, run_dir)
    return os.path.join(folder, f"{safe_name(step_id)}.{attempt}.lock")


RUN_DIR_FILE = "run_dir"  # in a lock folder: the absolute path of its run directory


def _make_lock_dir(folder: str, run_dir: str) -> None:
    # A finished run's lock folder is removed; a retry needs it back. One mkdir when it exists.
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        return
    write_atomic(os.path.join(folder, RUN_DIR_FILE), os.path.abspath(run_dir).encode())


def result_path(run_dir: str, step_id: str, attempt: int) -> str:
    """Path of the attempt's result file."""
    return attempt_base(run_dir, step_id, attempt) + ".result.json"


def outputs_path(run_dir: str, step_id: str, attempt: int) -> str:
    """Path of the attempt's outputs file (the value of STEPLEDGER_OUTPUTS)."""
    return attempt_base(run_dir, step_id, attempt) + ".outputs.json"


def write_file(path: str, data: bytes) -> None:
    """Write `data` to `path` in place (the caller makes sure nobody reads it half-written)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and os.replace, so readers never see half."""
    tmp = f"{path}.tmp{os.getpid()}"  # two writers (worker, pool) never share a temporary
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def proc_start_time(pid: int) -> int | None:
    """The start time (clock ticks since boot) of process `pid`, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields restart after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{6,}\b")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*/)+[\w.-]+")
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"[ \t]+")


def error_signature(reason: str | None, exit_code: int | None, tail: str) -> str:
    """A short normalised text naming a failure, equal for "the same error" across attempts."""
    lines = []
    for raw in tail.splitlines():
        line = raw.strip()
        # Our own "exit 1 in 0.52s" lines carry no information beyond exit_code, which is kept apart.
        if not line or (line.startswith("exit ") and line.endswith("s") and " in " in line):
            continue
        line = _PATH.sub("<path>", line)
        line = _HEX.sub("<hex>", line)
        line = _DIGITS.sub("N", line)
        lines.append(_SPACE.sub(" ", line))
    body = " | ".join(lines[-3:])
    return f"{reason}:{exit_code}:{body[-240:]}"
