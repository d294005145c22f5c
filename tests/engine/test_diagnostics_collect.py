"""collect_diagnostics on a real failed run: attempt output, environment summary without secrets, timings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from failure_scripts import prints_error, write_workstream

from stepledger.engine.run.diagnostics import collect_diagnostics, collect_if_asked, diagnostics_dir
from stepledger.engine.session.runs import run_dir_of, start_run
from stepledger.engine.workstream import load_workstream
from stepledger.store.connect import open_store


def test_diagnostics_keep_failed_attempts_environment_and_timings(tmp_path: Path, sqlite_url: str) -> None:
    ws = load_workstream(
        write_workstream(
            tmp_path,
            {
                "id": "ws-diag",
                "retry": {"strategy": "fixed", "initial_delay": 0.05},
                "circuit_breaker": {"max_attempts": 2},
                "error_handling": {"on_failure": {"action": "log_and_continue", "collect_diagnostics": True}},
                "steps": [
                    {
                        "id": "deploy",
                        "tool": "shell",
                        "env": {"API_TOKEN": "hunter2-secret", "REGION": "eu"},
                        "tasks": [prints_error("ERROR: 401 unauthorized for api.example.com", 5)],
                    }
                ],
            },
        )
    )
    store = open_store(sqlite_url)
    try:
        result = start_run(store, ws, workdir=tmp_path)
    finally:
        store.close()
    assert result.outcome == "failed"
    run_dir = run_dir_of(tmp_path, result.run_id)
    folder = collect_diagnostics(run_dir, result.run, "deploy", ws.step("deploy"))
    assert folder == diagnostics_dir(run_dir, "deploy") == run_dir / "diagnostics" / "deploy"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "attempt-1.log",
        "attempt-1.result.json",
        "attempt-2.log",
        "attempt-2.result.json",
        "environment.json",
        "summary.txt",
        "timings.json",
    ]
    for n in (1, 2):
        assert "ERROR: 401 unauthorized" in (folder / f"attempt-{n}.log").read_text()
        assert json.loads((folder / f"attempt-{n}.result.json").read_text())["exit_code"] == 5
    env = json.loads((folder / "environment.json").read_text())
    assert env["step_env_keys"] == ["API_TOKEN", "REGION"]
    assert env["cwd"] == str(tmp_path) and env["PATH"] and env["python"].count(".") == 2 and env["host"]
    timings = json.loads((folder / "timings.json").read_text())
    assert [a["attempt"] for a in timings["attempts"]] == [1, 2]
    assert all(a["duration_s"] >= 0 and a["reason"] == "exit_code" for a in timings["attempts"])
    assert timings["state"] == "tripped" and timings["counted_failures"] == 2
    assert "deploy" in (folder / "summary.txt").read_text()
    for path in folder.iterdir():  # the step's env values never reach the diagnostics
        assert "hunter2" not in path.read_text()
    # Collecting again (a resumed run) refreshes the same folder.
    assert collect_diagnostics(run_dir, result.run, "deploy", ws.step("deploy")) == folder


def test_collect_if_asked_follows_on_failure(tmp_path: Path, sqlite_url: str) -> None:
    data: dict[str, Any] = {
        "id": "ws-ask",
        "steps": [{"id": "s", "tool": "shell", "tasks": [prints_error("ERROR: x")]}],
    }
    ws_off = load_workstream(write_workstream(tmp_path, data, "off.json"))
    data["error_handling"] = {"on_failure": {"collect_diagnostics": True}}
    ws_on = load_workstream(write_workstream(tmp_path, data, "on.json"))
    store = open_store(sqlite_url)
    try:
        result = start_run(store, ws_on, workdir=tmp_path)
    finally:
        store.close()
    notes: list[str] = []
    reporter = SimpleNamespace(note=notes.append)
    run_dir = run_dir_of(tmp_path, result.run_id)
    off = SimpleNamespace(ws=ws_off, run_dir=run_dir, run=result.run, reporter=reporter)
    assert collect_if_asked(off, "s") is None
    on = SimpleNamespace(ws=ws_on, run_dir=run_dir, run=result.run, reporter=reporter)
    folder = collect_if_asked(on, "s")
    assert folder is not None and (folder / "attempt-1.log").is_file()
    assert notes == [f"[s] diagnostics kept in {folder}"]
