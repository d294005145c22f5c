"""Diagnostics of a step that printed a lot: a bounded copy of its log, private files and folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from failure_scripts import write_workstream

from stepledger.engine.execution import files
from stepledger.engine.run.diagnostics import LOG_HEAD_BYTES, LOG_TAIL_BYTES, collect_diagnostics
from stepledger.engine.session.runs import run_dir_of, start_run
from stepledger.engine.workstream import load_workstream
from stepledger.store.connect import open_store

# 3 MB of numbered lines, then an error at the very end: the tail is where the failure shows.
CHATTY = "seq 1 400000; echo 'FATAL: the end of the log' >&2; exit 3"


def test_a_huge_log_is_kept_as_head_and_tail_in_private_files(tmp_path: Path, sqlite_url: str) -> None:
    ws = load_workstream(write_workstream(tmp_path, {
        "id": "ws-big", "circuit_breaker": {"max_attempts": 1},
        "steps": [{"id": "chatty", "tool": "shell", "tasks": [CHATTY]}],
    }))  # fmt: skip
    store = open_store(sqlite_url)
    try:
        result = start_run(store, ws, workdir=tmp_path)
    finally:
        store.close()
    assert result.outcome == "failed"
    run_dir = run_dir_of(tmp_path, result.run_id)
    previous = os.umask(0o022)  # the usual umask, which would leave everything readable by others
    try:
        folder = collect_diagnostics(run_dir, result.run, "chatty", ws.step("chatty"))
    finally:
        os.umask(previous)
    source = Path(files.log_path(str(run_dir), "chatty", 1)).read_bytes()
    assert len(source) > 2 * (LOG_HEAD_BYTES + LOG_TAIL_BYTES)
    copy = (folder / "attempt-1.log").read_bytes()
    assert copy.startswith(source[:LOG_HEAD_BYTES]) and copy.endswith(source[-LOG_TAIL_BYTES:])
    cut = len(source) - LOG_HEAD_BYTES - LOG_TAIL_BYTES
    assert f"[... {cut} bytes cut by stepledger diagnostics".encode() in copy
    assert len(copy) < LOG_HEAD_BYTES + LOG_TAIL_BYTES + 1000
    assert b"FATAL: the end of the log" in copy
    for path in (run_dir / "diagnostics", folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
