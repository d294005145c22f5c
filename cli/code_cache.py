"""The code Python compiles for every dataclass, kept between commands.

`@dataclass` writes the source text of each class's methods (`__init__`, `__repr__`, `__eq__`, and
for frozen classes `__setattr__`, `__delattr__`, `__hash__`) and compiles it with `exec`, at every
import: for `stepledger run` that compiling was about half of all its imports (docs/performance.md).
The text depends only on the class's fields and options, so the code compiled from it can be kept
like a .pyc: `install` gives the dataclasses module an `exec` that looks the text up in a cache
file first (the module calls `exec` by its global name, in every Python version that has
dataclasses), and `save` writes what was compiled anew when the command leaves.

The file is in the user's cache folder (XDG_CACHE_HOME, else ~/.cache), named by the interpreter's
cache tag and stamped with its bytecode's magic number; it is read only when it is a regular file
this user owns and no one else may write. Anything unusual (no such folder, a file of another
version, a damaged file, a read-only disk) means compiling as Python does. It is written even under
PYTHONDONTWRITEBYTECODE (which speaks of .pyc files); STEPLEDGER_NO_CODE_CACHE=1 turns it off.
"""

from __future__ import annotations

import builtins
import contextlib
import marshal
import os
import stat
import sys
from types import CodeType
from typing import Any

OFF_ENVVAR = "STEPLEDGER_NO_CODE_CACHE"  # set (non-empty): neither read nor written
MAX_ENTRIES = 5_000  # beyond that, a save keeps only what the command used (old versions' code goes)

_cache: dict[str, CodeType] = {}
_used: set[str] = set()
_new: dict[str, CodeType] = {}


def _magic() -> bytes:
    try:
        import _frozen_importlib_external  # loaded at start-up; importlib.util would cost imports

        return bytes(_frozen_importlib_external.MAGIC_NUMBER)
    except (ImportError, AttributeError):
        from importlib.util import MAGIC_NUMBER

        return MAGIC_NUMBER


def cache_file() -> str:
    """Where the compiled code is kept for this interpreter."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stepledger", f"dataclass-code.{sys.implementation.cache_tag}.marshal")


def _load() -> None:
    try:
        # Not blocking: a FIFO or a device at that path is refused below, not waited on.
        fd = os.open(cache_file(), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with open(fd, "rb") as f:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o022:
                return  # code another user could have written is not run
            data = f.read()
    except OSError:
        return
    magic = _magic()
    if not data.startswith(magic):
        return
    try:
        loaded = marshal.loads(data[len(magic) :])
    except Exception:  # a damaged file: besides EOFError and ValueError, marshal raises TypeError
        return  # and SystemError (a code object it cannot rebuild)
    if isinstance(loaded, dict):
        _cache.update(loaded)


def _cached_exec(source: Any, globals: Any = None, locals: Any = None, /, **kw: Any) -> None:
    # The dataclasses module's `exec`: its source text's code from the cache, or compiled as `exec`
    # compiles it there (that module has no __future__ imports, so none are inherited here).
    if type(source) is not str or kw:
        return builtins.exec(source, globals, locals, **kw)
    code = _cache.get(source)
    if type(code) is not CodeType:  # not kept, or something else a damaged file held
        code = _new[source] = _cache[source] = compile(source, "<string>", "exec", dont_inherit=True)
    _used.add(source)
    return builtins.exec(code, globals, locals)


def install() -> None:
    """Make the dataclasses defined from now on in this process use the cache (once)."""
    import dataclasses

    if getattr(dataclasses, "exec", None) is _cached_exec or os.environ.get(OFF_ENVVAR):
        return
    _load()
    dataclasses.exec = _cached_exec  # type: ignore[attr-defined]


def save() -> None:
    """Write the cache file if this process compiled code it did not hold (errors are ignored)."""
    if not _new:
        return
    kept = _cache if len(_cache) <= MAX_ENTRIES else {s: _cache[s] for s in _used}
    path = cache_file()
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        _new.clear()
        return  # no folder, or that name is taken (another process's file): left alone
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_magic() + marshal.dumps(kept))
        os.replace(temporary, path)  # readers see the old file or the new one, never half of one
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    _new.clear()
