"""Lock folders left on tmpfs go once their run directory is gone and no process holds a lock in
them; every other folder stays."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stepledger.engine.execution import files
from stepledger.engine.execution.lock_sweep import sweep_lock_dirs

pytestmark = pytest.mark.skipif(files.lock_root() is None, reason="no usable /dev/shm on this machine")


def attempt_lock(run_dir: Path, step_id: str = "s", attempt: int = 1) -> str:
    """The lock file of an attempt of a run in `run_dir`, created as a worker creates it."""
    path = files.lock_path(str(run_dir), step_id, attempt)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    return path


def test_a_lock_folder_names_its_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folder = os.path.dirname(attempt_lock(run_dir))
    assert Path(folder, files.RUN_DIR_FILE).read_text() == str(run_dir.resolve())
    shutil.rmtree(folder)


def test_only_folders_of_deleted_run_directories_with_no_held_lock_go(tmp_path: Path) -> None:
    kept, gone, busy = tmp_path / "kept", tmp_path / "gone", tmp_path / "busy"
    for run_dir in (kept, gone, busy):
        run_dir.mkdir()
    attempt_lock(kept)
    attempt_lock(gone)
    held = attempt_lock(busy)
    # A process that outlives its run directory holds its attempt's lock, as a worker does.
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('locked', flush=True); sys.stdin.read()"
    )
    command = [sys.executable, "-c", code, held]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        shutil.rmtree(gone)
        shutil.rmtree(busy)
        assert sweep_lock_dirs() >= 1
        assert os.path.isdir(files.lock_dir(str(kept)))  # its run directory is still there
        assert not os.path.exists(files.lock_dir(str(gone)))
        assert os.path.exists(held)  # its lock is held
        holder.communicate(timeout=30)  # ends its input: it exits
    assert sweep_lock_dirs() >= 1  # the holder has exited
    assert not os.path.exists(files.lock_dir(str(busy)))
    shutil.rmtree(files.lock_dir(str(kept)))


def test_a_folder_that_does_not_name_its_run_directory_stays(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folder = os.path.dirname(attempt_lock(run_dir))
    os.remove(os.path.join(folder, files.RUN_DIR_FILE))  # as an older stepledger made it
    shutil.rmtree(run_dir)
    sweep_lock_dirs()
    assert os.path.isdir(folder)
    shutil.rmtree(folder)


def test_folders_that_stay_do_not_keep_a_stale_one_from_ever_being_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_SHM", str(tmp_path / "shm"))
    os.mkdir(tmp_path / "shm")
    kept = [tmp_path / f"kept{i}" for i in range(9)]
    gone = tmp_path / "gone"
    for run_dir in [*kept, gone]:
        run_dir.mkdir()
        attempt_lock(run_dir)
    shutil.rmtree(gone)
    stale = os.path.basename(files.lock_dir(str(gone)))
    listed = os.listdir
    # The stale folder listed last, behind nine that must stay, and one folder looked at per sweep.
    monkeypatch.setattr(os, "listdir", lambda path: sorted(listed(path), key=lambda name: name == stale))
    removed = sum(sweep_lock_dirs(limit=1) for _ in range(200))  # missed 200 times: 0.9**200, ~1e-9
    assert removed == 1
    assert not os.path.exists(files.lock_dir(str(gone)))
    assert all(os.path.isdir(files.lock_dir(str(run_dir))) for run_dir in kept)
