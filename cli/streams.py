"""stdout and stderr that outlive their reader: `| head`, a quit `less`, a closed terminal or ssh.

When the reader of a stream goes away, writing to it raises (EPIPE for a pipe, EIO for a terminal
that was hung up). A command must not die of that: a run goes on recording (its orchestrator.log
keeps every line), and a command's exit code stays the one it would have had. So the first failed
write marks the stream gone and every later write is dropped; commands that would otherwise print
for ever (`--follow`) ask `output_gone()` and stop.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from typing import Any, TextIO

# EPIPE: the pipe's reader closed it. EIO: the terminal was hung up. ENXIO/EBADF: it is gone.
_GONE_ERRNOS = {errno.EPIPE, errno.EIO, errno.ENXIO, errno.EBADF, errno.ECONNRESET}


class OutlivedStream:
    """A text stream whose writes never raise once its reader is gone; they are dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except (OSError, ValueError) as error:  # ValueError: the stream was closed
                self._give_up(error)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (OSError, ValueError) as error:
                self._give_up(error)

    def isatty(self) -> bool:
        if self.gone:
            return False
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _give_up(self, error: Exception) -> None:
        if isinstance(error, OSError) and error.errno not in _GONE_ERRNOS:
            raise error
        self.gone = True

    def __getattr__(self, name: str) -> Any:  # encoding, errors, fileno, buffer, ...
        return getattr(self._stream, name)


def outlive_readers() -> None:
    """Put stdout and stderr behind `OutlivedStream` (once; the command line's first act)."""
    if not isinstance(sys.stdout, OutlivedStream):
        sys.stdout = OutlivedStream(sys.stdout)
    if not isinstance(sys.stderr, OutlivedStream):
        sys.stderr = OutlivedStream(sys.stderr)


def output_gone() -> bool:
    """Whether stdout's reader went away (a follower should stop)."""
    return bool(getattr(sys.stdout, "gone", False))


def flush_quietly() -> None:
    """Flush stdout and stderr, whatever became of their readers."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
