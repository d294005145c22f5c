"""A damaged SQLite file: `replay --verify` and `db rebuild` fail on it, and every command that
meets it says which file and how to recover, in one line.

The damage is real: pages of a real log overwritten with garbage, as a bad disk or copy leaves them.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stepledger.events import RunStarted, StepReady, StreamWrite
from stepledger.store.connect import open_store
from stepledger.store.errors import DatabaseDamaged

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))
PAGE = 4096  # SQLite's default page size, which the store keeps


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_DB"}
    return subprocess.run(
        [STEPLEDGER, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=environment
    )


def a_log(path: Path, runs: int = 200) -> str:
    url = f"sqlite:///{path}"
    store = open_store(url)
    for n in range(runs):
        run_id = f"r{n}"
        started = RunStarted(workstream_id="ws", workstream={"id": "ws", "pad": "x" * 500},
                             workstream_hash="h", source_path="ws.json", workdir=".")  # fmt: skip
        store.append([StreamWrite(run_id, run_id, 0, [started])])
        store.append([StreamWrite(run_id, f"{run_id}/a", 0, [StepReady()])])
    store.close()  # the last connection checkpoints the WAL into the file
    return url


def damage(path: Path, pages: range) -> None:
    with path.open("r+b") as f:
        for page in pages:
            f.seek(page * PAGE)
            f.write(b"\xde\xad\xbe\xef" * (PAGE // 4))


def quick_check(path: Path) -> list[str]:
    try:
        return [row[0] for row in sqlite3.connect(path).execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as error:  # damage in the pages the check starts from
        return [str(error)]


def assert_recovery_line(result: subprocess.CompletedProcess, path: Path, code: int) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"the database file {path} is damaged" in lines[0]
    assert f"sqlite3 {path} .recover" in lines[0] and "stepledger db rebuild" in lines[0]


def test_verify_and_rebuild_pass_on_a_sound_file_and_fail_on_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = a_log(path)
    assert run("replay", "r1", "--verify", "--db", url, cwd=tmp_path).returncode == 0
    assert run("db", "rebuild", "--db", url, cwd=tmp_path).returncode == 0
    # Damage pages that neither command reads for run r1 (the last pages of the file): only the
    # integrity check can see it, which is why they must run it.
    pages = path.stat().st_size // PAGE
    damage(path, range(pages - 3, pages - 1))
    assert quick_check(path) != ["ok"]
    assert run("replay", "r1", "--db", url, cwd=tmp_path).returncode == 0  # r1's own pages are sound
    assert_recovery_line(run("replay", "r1", "--verify", "--db", url, cwd=tmp_path), path, 1)
    assert_recovery_line(run("db", "rebuild", "--db", url, cwd=tmp_path), path, 1)


def test_a_write_that_meets_a_damaged_file_says_how_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = a_log(path)
    damage(path, range(5, 95, 3))  # every third page: b-tree pages of every table and index
    with pytest.raises(DatabaseDamaged, match=r"\.recover .*stepledger db rebuild"):
        store = open_store(url)  # opening reads the schema, which may be damaged already
        try:
            for n in range(200):  # appends until one meets a damaged page
                store.append([StreamWrite(f"r{n}", f"r{n}/a", 1, [StepReady()])])
        finally:
            store.close()
    # `resume` of a run the log shows running: the same line, not a traceback.
    assert_recovery_line(run("resume", "r3", "--db", url, cwd=tmp_path), path, 1)
