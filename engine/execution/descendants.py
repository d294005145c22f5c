"""Every process an attempt starts ends with the attempt, however it detached.

A process group is not enough: a child that calls `setsid` (or daemonises by double fork) leaves
its attempt's group, and a kill of the group misses it. So each worker makes itself a *child
subreaper* (`PR_SET_CHILD_SUBREAPER`): an orphaned descendant is re-parented to the worker, not to
init, and stays findable as a descendant. When an attempt ends, the worker kills every descendant
it has — a worker runs one attempt at a time, so all of them are that attempt's — and reaps them.

Linux only (prctl); elsewhere `become_subreaper` is a no-op and the process groups remain the
only net. Imported by the worker process: standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
ROUNDS = 50  # kill-and-reap passes: each catches what forked while the previous one was killing


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where the kernel cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def has_children() -> bool:
    """Whether this process has any child, alive or exited and not yet reaped."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        # The command name is in parentheses and may itself hold spaces or parentheses.
        out[int(entry)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
    return out


def descendants_of(root: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every process below `root`, parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [(pid, root) for pid in children.get(root, ())]
    while todo:
        pid, ppid = todo.pop()
        found.append((pid, ppid))
        todo.extend((child, pid) for child in children.get(pid, ()))
    return found


def kill_all(root: int) -> list[int]:
    """SIGKILL every descendant of `root` (this process) and reap its children; the pids killed.

    Call it when the attempt's own group leaders have been reaped: what is left is strays.
    Costs one waitid when there are none, which is the usual case.
    """
    killed: list[int] = []
    for _ in range(ROUNDS):
        if not has_children():
            return killed
        found = descendants_of(root)
        for pid, _ppid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        killed.extend(pid for pid, _ppid in found)
        # Reap our own children (a SIGKILLed one exits at once); their killed descendants are
        # re-parented to us as they die and are reaped on the next pass, as are children that
        # forked into existence after the scan.
        for pid, ppid in found:
            if ppid == root:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
    return killed
