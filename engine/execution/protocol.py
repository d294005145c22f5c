"""The worker pipe protocol: length-prefixed pickles of plain data (tuples, dicts, str, numbers).

    pool → worker   ("run", spec_dict) | ("cancel", (run_id, step_id, attempt), reason) | ("stop",)
    worker → pool   ("spawned", pgid)  | ("result", result_dict)

"spawned" is sent once per python attempt, when its function has returned and its first child
(an acceptance test) starts: from then on the worker, not the pool, enforces the deadline.

Imported by the worker process: standard library only.
"""

from __future__ import annotations

import os
import pickle
import select
import struct

TYPE_CHECKING = False  # as typing's, without importing typing: a worker starts on a run's critical path
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    # What the pool sends a worker (the module's docstring).
    PoolMessage: TypeAlias = (
        tuple[Literal["run"], dict]
        | tuple[Literal["cancel"], tuple[str, str, int], str]
        | tuple[Literal["stop"]]
    )

HEADER = struct.Struct("!I")


def read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly n bytes from fd, or None at end-of-file."""
    data = os.read(fd, n)
    if len(data) == n or not data:
        return data or None
    chunks = [data]
    got = len(data)
    while got < n:
        more = os.read(fd, n - got)
        if not more:
            return None
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    """Write all of data to fd (a pipe write may be partial for large messages)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def frame(msg: object) -> bytes:
    """One message as it travels over a pipe: 4-byte big-endian length, then the pickle."""
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


class Channel:
    """The worker's end of the two pipes to its pool."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.orphaned = False  # the pool is gone: finish the attempt, then exit

    def receive(self) -> PoolMessage | None:
        """The next message, or None when the pool closed the pipe (or died)."""
        header = read_exact(self.rfd, 4)
        if header is None:
            self.orphaned = True
            return None
        data = read_exact(self.rfd, HEADER.unpack(header)[0])
        if data is None:
            self.orphaned = True
            return None
        return pickle.loads(data)

    def pool_gone(self) -> bool:
        """Whether the pool has hung up: no process holds the write end of our job pipe any more.

        Only the orchestrator holds that end (the pool spawns every process with close_fds), so a
        hang-up means the orchestrator died or closed the pool. Buffered jobs are still readable
        after it; this is how a worker tells that a job it has read outlived its sender.
        """
        if self.orphaned:
            return True
        poller = select.poll()
        poller.register(self.rfd, select.POLLIN)
        return any(mask & (select.POLLHUP | select.POLLERR) for _fd, mask in poller.poll(0))

    def send(self, msg: object) -> None:
        """Send a message; a vanished pool is noted, not raised (the result file already holds it)."""
        if self.orphaned:
            return
        try:
            write_all(self.wfd, frame(msg))
        except OSError:
            self.orphaned = True
