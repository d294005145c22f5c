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
if sys.argv[1] == "cached":
    from stepledger.cli import code_cache  # installs itself, as every command's does
    assert dataclasses.exec is code_cache._cached_exec

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
if sys.argv[1] == "cached":
    print("compiled anew:", len(code_cache._new), file=sys.stderr)
    code_cache.save()
"""


def probe(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
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
