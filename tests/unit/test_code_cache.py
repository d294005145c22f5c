"""The dataclasses' compiled code kept between commands (cli/code_cache.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Dataclasses of every kind the project uses; what they do is printed, to compare across processes.
PROBE = """
import dataclasses, sys
from dataclasses import dataclass, field
if sys.argv[1] != "plain":
    from stepledger.cli import code_cache  # installs itself, as every command's does
    assert (getattr(dataclasses, "exec", None) is code_cache._cached_exec) == (sys.argv[1] == "cached")

@dataclass(frozen=True, kw_only=True)
class Frozen:
    a: str
    b: tuple = field(default_factory=tuple)
    c: int = 0

@dataclass(order=True)
class Ordered:
    x: int
    y: list = field(default_factory=list)
    def __post_init__(self):
        self.y.append(self.x)

@dataclass(slots=True)
class Slotted:
    p: float = 1.5

f = Frozen(a="x", b=(1,))
print(repr(f), f == Frozen(a="x", b=(1,)), hash(f) == hash(Frozen(a="x", b=(1,))))
try:
    f.a = "z"
except dataclasses.FrozenInstanceError as error:
    print("frozen", type(error).__name__)
print(repr(Ordered(2)), Ordered(1) < Ordered(2), sorted([Ordered(3), Ordered(1)]))
print(repr(Slotted()), Slotted.__slots__)
if sys.argv[1] != "plain":
    print("compiled anew:", len(code_cache._new), file=sys.stderr)
    code_cache.save()
"""


def probe(
    tmp_path: Path, mode: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """PROBE in a new interpreter: `plain` (no cache), `cached`, or `off` (turned off: not installed)."""
    env = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_NO_CODE_CACHE"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), **(extra_env or {}))
    return subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip


def test_code_kept_by_one_process_builds_the_same_dataclasses_in_the_next(tmp_path: Path) -> None:
    plain = probe(tmp_path, "plain")
    first = probe(tmp_path, "cached")
    cache = next((tmp_path / "cache" / "stepledger").iterdir())
    written = cache.stat()
    second = probe(tmp_path, "cached")
    assert plain.stdout == first.stdout == second.stdout
    assert "frozen FrozenInstanceError" in plain.stdout
    assert "compiled anew: 0" not in first.stderr
    # The second process compiled nothing: every method came from the file, left as it was.
    assert "compiled anew: 0" in second.stderr
    assert cache.stat().st_mtime_ns == written.st_mtime_ns
    assert oct(written.st_mode & 0o777) == "0o600"


def test_a_cache_file_others_could_write_or_of_another_python_is_not_read(tmp_path: Path) -> None:
    probe(tmp_path, "cached")
    cache = next((tmp_path / "cache" / "stepledger").iterdir())
    cache.chmod(0o666)
    assert "compiled anew: 0" not in probe(tmp_path, "cached").stderr
    cache.chmod(0o600)
    cache.write_bytes(b"\0\0\0\0" + cache.read_bytes()[4:])  # another interpreter's magic number
    assert "compiled anew: 0" not in probe(tmp_path, "cached").stderr


def _damaged(cache: Path) -> dict[str, bytes]:
    """Damaged versions of a good cache file: cut short, values that are no code, and a change
    of one byte that makes marshal raise SystemError (not one of its usual errors)."""
    import marshal
    from types import CodeType

    data = cache.read_bytes()
    magic, body = data[:4], data[4:]
    kept = marshal.loads(body)
    assert kept and all(type(code) is CodeType for code in kept.values())
    damaged = {
        "cut short": data[: len(data) // 2],
        "no code": magic + marshal.dumps(dict.fromkeys(kept, 1)),
    }
    for i in range(len(body)):
        changed = bytearray(body)
        changed[i] ^= 0xFF
        try:
            marshal.loads(bytes(changed))
        except SystemError:
            damaged["SystemError"] = magic + bytes(changed)
            break
        except Exception:
            continue
    return damaged


def test_a_damaged_cache_file_means_compiling_as_python_does_and_is_written_anew(tmp_path: Path) -> None:
    plain = probe(tmp_path, "plain")
    probe(tmp_path, "cached")
    folder = tmp_path / "cache" / "stepledger"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    cache = next(folder.iterdir())
    damaged = _damaged(cache)
    assert set(damaged) == {"cut short", "no code", "SystemError"}
    for what, data in damaged.items():
        cache.write_bytes(data)
        again = probe(tmp_path, "cached")  # check=True: the command does not fail
        assert again.stdout == plain.stdout, what
        assert "compiled anew: 0" not in again.stderr, what
        # Written anew: the next command compiles nothing.
        assert "compiled anew: 0" in probe(tmp_path, "cached").stderr, what


def test_a_fifo_at_the_cache_path_is_not_waited_on(tmp_path: Path) -> None:
    probe(tmp_path, "cached")
    cache = next((tmp_path / "cache" / "stepledger").iterdir())
    cache.unlink()
    os.mkfifo(cache, 0o600)
    assert "compiled anew: 0" not in probe(tmp_path, "cached").stderr  # timeout=60: it would hang


def test_the_cache_is_neither_read_nor_written_when_turned_off(tmp_path: Path) -> None:
    off = {"STEPLEDGER_NO_CODE_CACHE": "1"}
    first = probe(tmp_path, "off", off)
    assert "compiled anew: 0" in first.stderr  # nothing went through the cache
    assert not (tmp_path / "cache").exists()
    probe(tmp_path, "cached")
    cache = next((tmp_path / "cache" / "stepledger").iterdir())
    cache.write_bytes(cache.read_bytes()[: len(cache.read_bytes()) // 2])  # would be written anew if used
    written = cache.stat().st_mtime_ns
    assert probe(tmp_path, "off", off).stdout == first.stdout
    assert cache.stat().st_mtime_ns == written
