"""An attempt's log is capped: its head and tail are kept, with a line saying what was cut."""

from __future__ import annotations

from pathlib import Path

import pytest
from exec_support import make_spec, run_one, started_pool

from stepledger.engine.execution import files
from stepledger.engine.execution.attempt import TRIM_CHUNK

# Numbered lines, so that what was kept can be checked line by line.
LINES = "i=0; while [ $i -lt {n} ]; do echo line-$i; i=$((i+1)); done"


def test_a_log_over_the_cap_keeps_its_head_and_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = 100_000
    monkeypatch.setenv("STEPLEDGER_MAX_LOG_BYTES", str(cap))
    n = 300_000  # about 3 MB of output
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=(LINES.format(n=n),)))
    assert result.passed
    log = Path(files.log_path(str(tmp_path / "run"), "s", 1)).read_text()
    assert len(log.encode()) < cap + 1_000
    assert "line-0\nline-1\n" in log  # the head
    assert f"line-{n - 1}\nexit 0 in" in log  # the tail, with the worker's own last line
    assert "bytes of output cut here" in log and "STEPLEDGER_MAX_LOG_BYTES=100000" in log
    assert f"line-{n // 2}\n" not in log  # the middle went
    assert f"line-{n - 1}" in result.output_excerpt


def test_a_log_under_the_cap_is_left_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPLEDGER_MAX_LOG_BYTES", str(2 * TRIM_CHUNK))
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=(LINES.format(n=50_000),)))
    assert result.passed
    log = Path(files.log_path(str(tmp_path / "run"), "s", 1)).read_text()
    assert "cut here" not in log
    assert all(f"line-{i}\n" in log for i in range(0, 50_000, 997))
