"""An attempt's files are its user's only, the lock root must be ours, steps never see the log's URL."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from exec_support import make_spec, run_one, started_pool

from stepledger.engine.execution import files


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_attempt_files_are_private_and_steps_do_not_get_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEPLEDGER_DB", "postgresql://u:hunter2@127.0.0.1/db")
    task = 'env > env.txt; echo \'{"k": 1}\' > "$STEPLEDGER_OUTPUTS"'
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=(task,)))
    assert result.passed, result.output_excerpt
    env = (tmp_path / "env.txt").read_text()
    assert "STEPLEDGER_DB" not in env and "hunter2" not in env
    assert "STEPLEDGER_RUN_ID=r1" in env  # the step's own variables are there
    rd = str(tmp_path / "run")
    assert mode(rd) == 0o700
    for path in (files.log_path(rd, "s", 1), files.result_path(rd, "s", 1), files.lock_path(rd, "s", 1)):
        assert mode(path) == 0o600, path
    lock_dir = files.lock_dir(rd)
    if lock_dir != rd:
        assert mode(lock_dir) == 0o700


def test_a_lock_root_that_is_not_ours_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(files, "_SHM", str(shm))
    root = shm / f"stepledger-{os.getuid()}"
    assert files.lock_root() == str(root)  # made by us, 0700
    assert mode(root) == 0o700
    root.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.symlink_to(elsewhere)  # planted by someone else before our first run
    assert files.lock_root() is None
    assert files.lock_dir(str(tmp_path / "run")) == str(
        tmp_path / "run"
    )  # the locks stay in the run directory
    root.unlink()
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)  # others could replace our lock files
    assert files.lock_root() is None
    os.chmod(root, 0o700)
    assert files.lock_root() == str(root)
    if os.getuid() == 0:  # only root can give a folder away; CI runs as root
        os.chown(root, 65534, 65534)
        assert files.lock_root() is None
