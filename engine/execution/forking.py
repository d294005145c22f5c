"""A worker forked from the orchestrator, instead of a new interpreter spawned for it.

A spawned worker (pool.py) costs its interpreter's start and its imports, ~25 ms of CPU each,
while the orchestrator itself is starting: on a 2-core machine three of them delay the run's first
step (docs/performance.md). The orchestrator has already imported nearly all a worker needs, so a
fork of it is ready in about a millisecond. It forks only while it has a single thread (a fork of
a threaded process can inherit a lock some other thread held): at a run's start, before its reader
thread exists; and only while it is small (FORK_MAX_RSS_KIB). A worker that replaces a dead one
later, or one of a pool its caller did not start at its own start (a fleet worker's), is spawned
as before.

The child becomes what a spawned worker is: the leader of its own process group, its pipes as fd
0 and 1, no other descriptor of the orchestrator's (the other workers' pipes, the log's database
file), default signal handling, no STEPLEDGER_DB in its environment, and the orchestrator's own
directory not on sys.path. Its command line names the worker's module, as a spawned worker's
does, and its name (/proc/PID/comm, what `top` shows) is WORKER_NAME. It
never returns into the orchestrator's code: it leaves by os._exit, so no exit handler of the
orchestrator (atexit, buffered output, the code cache) runs twice.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from typing import IO

from stepledger.store.connect import ENV_VAR as DB_ENVVAR  # the database URL (and its password)

WORKER_NAME = "stepledger-wkr"  # /proc/PID/comm holds at most 15 bytes
WORKER_MODULE = "stepledger.engine.execution.worker"  # what a worker's command line names
_SETUP_FAILED = 70  # the exit status of a child that could not become a worker (on its stderr)


SPAWN_ENVVAR = "STEPLEDGER_SPAWN_WORKERS"  # set (non-empty): every worker is spawned, none forked
# A forked worker comes to hold its own copy of most of the memory the orchestrator had when it
# forked (each page the orchestrator writes afterwards is copied), where a spawned one holds about
# 13 MB: past this size of the orchestrator (a workstream of thousands of steps) forking would
# buy its start-up milliseconds with memory per worker, so workers are spawned.
FORK_MAX_RSS_KIB = 24 * 1024


def can_fork() -> bool:
    """Whether this process may fork a worker now: Linux, no thread but this one, still small, and
    forking not turned off."""
    return (
        sys.platform == "linux"
        and threading.active_count() == 1
        and not os.environ.get(SPAWN_ENVVAR)
        and _resident_kib() <= FORK_MAX_RSS_KIB
    )


def _resident_kib() -> int:
    """This process's resident memory now. (Not getrusage's peak: Linux carries that across exec,
    from whatever forked this process.)"""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGESIZE") // 1024


class ForkedWorker:
    """The parent's handle on a forked worker: the part of subprocess.Popen that the pool uses."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._lock = threading.Lock()  # the reader and a recovery thread may both wait

    def wait(self) -> int:
        """Reap the worker once its pipe has closed (the pool's only wait); its exit status."""
        with self._lock:
            if self.returncode is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    self.returncode = 0  # reaped elsewhere: nothing is known of its end
                else:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode


def fork_worker(main: str, *args: object) -> ForkedWorker:
    """Fork a worker that runs `main` ("module:function", called with `args`); the caller is this
    process's only thread (can_fork)."""
    # Imported here, once, rather than by each child after the fork (its modules, ctypes among
    # them, then share the orchestrator's pages): children importing at once on a small machine
    # take CPU from the orchestrator's own start.
    __import__(main.partition(":")[0])
    to_child, stdin = os.pipe()
    stdout, from_child = os.pipe()
    # Nothing buffered here may be written twice, by the child too.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    pid = os.fork()
    if pid == 0:
        _become_worker(to_child, from_child, main, args)  # never returns
    os.close(to_child)
    os.close(from_child)
    # Also done by the child: whichever runs first, the group exists before the pool signals it.
    # It fails only where the child did it already (and may have exited since).
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)
    return ForkedWorker(pid, open(stdin, "wb", buffering=0), open(stdout, "rb", buffering=0))


def _become_worker(to_child: int, from_child: int, main: str, args: tuple[object, ...]) -> None:
    """In the child: become a worker as spawned workers start, run `main`, and leave."""
    # Garbage of the orchestrator's that a collection here would finalize could close a descriptor
    # number this process has since reused (a pipe, an attempt's log): none is ever collected.
    gc.freeze()
    status = _SETUP_FAILED
    try:
        os.setpgid(0, 0)
        os.dup2(to_child, 0)
        os.dup2(from_child, 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        for sig in signal.valid_signals():
            handler = signal.getsignal(sig)
            if callable(handler) and handler is not signal.default_int_handler:
                signal.signal(sig, signal.SIG_DFL)
        os.environ.pop(DB_ENVVAR, None)
        _scrub_process_image()
        sys.argv = ["-c"]
        if not sys.flags.safe_path and sys.path:
            del sys.path[0]  # the script's or the current directory: nothing there shadows a task's import
        # The orchestrator's streams may be a terminal's (line-buffered); a worker's are its pipes.
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own, never closed)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        with open("/proc/self/comm", "w") as comm:
            comm.write(WORKER_NAME)
        module, _, function = main.partition(":")
        __import__(module)
        getattr(sys.modules[module], function)(*args)
        status = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(status)


def _scrub_process_image() -> None:
    """Make /proc/PID/cmdline name the worker, and drop STEPLEDGER_DB from /proc/PID/environ.

    Both show the bytes the kernel laid out at the orchestrator's exec, which a fork inherits: its
    command line (`stepledger run ...`, with whatever `--db` URL it was given), and its start-up
    environment. Left so, `ps` and `pkill -f 'stepledger run'` would take each worker for another
    run, and a python task that read its own /proc files would find the database password that a
    spawned worker's never hold. Overwritten in place, as setproctitle does (the interpreter copied
    its arguments at start-up and libc's environ no longer points at the removed variable): the
    command line becomes the worker's module, as a spawned worker's names it, padded with NULs.
    """
    import ctypes

    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()  # fields[0] is the stat file's third field
    arg_start, arg_end, env_start, env_end = (int(v) for v in fields[45:49])
    title = f"python -c {WORKER_MODULE}".encode()[: arg_end - arg_start - 1]
    ctypes.memmove(arg_start, title.ljust(arg_end - arg_start, b"\0"), arg_end - arg_start)
    environ = ctypes.string_at(env_start, env_end - env_start)
    at = 0
    for entry in environ.split(b"\0"):
        if entry.startswith(DB_ENVVAR.encode() + b"="):
            ctypes.memset(env_start + at, 0, len(entry))
        at += len(entry) + 1
