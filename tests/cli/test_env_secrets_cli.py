"""Secrets from the environment and the modes of a run's files, through the installed command."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepledger.store.connect import open_store

TOKEN = "ghp_s3cr3t_0f_the_user_7d1c"


def stepledger(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepledger.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**_clean_env(), **(env or {})}, timeout=60, umask=0o022,
    )  # fmt: skip


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "STEPLEDGER_DB")}


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_ids(url: str) -> list[str]:
    store = open_store(url)
    try:
        return list(store.run_ids())
    finally:
        store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / '.stepledger' / 'ledger.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_an_env_secret_reaches_the_step_and_nothing_the_run_records(tmp_path: Path, db_url: str) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "env": {"SHARED": "${env.GITHUB_TOKEN}"}, "steps": [
        {"id": "a", "tool": "shell", "tasks": ['printf %s "$GH" > got.txt'],
         "env": {"GH": "${env.GITHUB_TOKEN}"}, "acceptance_tests": ['test "$SHARED" = "$GH"']},
    ]})  # fmt: skip
    done = stepledger("run", "ws.json", "--db", db_url, "--json", cwd=tmp_path, env={"GITHUB_TOKEN": TOKEN})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "got.txt").read_text() == TOKEN
    [run_id] = run_ids(db_url)
    shown = [done.stdout, done.stderr]
    for command in (["events", run_id, "--json"], ["status", run_id, "--json"], ["runs", "--json"],
                    ["logs", run_id], ["logs", run_id, "a"],
                    ["audit", "timeline", run_id, "--json"]):  # fmt: skip
        out = stepledger(*command, "--db", db_url, cwd=tmp_path)
        assert out.returncode in (0, 1), out.stderr
        shown += [out.stdout, out.stderr]
    started = json.loads(
        stepledger("events", run_id, "--json", "--db", db_url, cwd=tmp_path).stdout.splitlines()[0]
    )
    assert started["payload"]["workstream"]["steps"][0]["env"] == {
        "SHARED": "${env.GITHUB_TOKEN}",
        "GH": "${env.GITHUB_TOKEN}",
    }
    files = [p for p in (tmp_path / ".stepledger").rglob("*") if p.is_file()]
    assert any(p.name == "orchestrator.log" for p in files)
    for text in shown:
        assert TOKEN not in text
    for path in files:  # the run's logs and attempt files, and SQLite's database and journal
        assert TOKEN.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("flags", [[], ["--use-current-file"]])
def test_resume_resolves_env_values_in_its_own_environment(tmp_path: Path, flags: list[str]) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [
        {"id": "a", "tool": "shell", "env": {"GH": "${env.GITHUB_TOKEN}"},
         "tasks": ['[ -e go ] || { touch started; sleep 30; }; printf %s "$GH" > got.txt']},
    ]})  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "stepledger.cli", "run", "ws.json"], cwd=tmp_path,
                            env={**_clean_env(), "GITHUB_TOKEN": TOKEN}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 30
    while not (tmp_path / "started").exists():  # the step's own marker: it is running now
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # stop now: the running step is killed, recorded interrupted
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    url = f"sqlite:///{tmp_path / '.stepledger' / 'ledger.db'}"
    [run_id] = run_ids(url)
    before = stepledger("events", run_id, "--json", cwd=tmp_path).stdout.splitlines()

    missing = stepledger("resume", run_id, *flags, cwd=tmp_path)
    assert missing.returncode == 2
    [line] = missing.stderr.splitlines()
    assert "GITHUB_TOKEN is not set" in line and "step a" in line and "Traceback" not in missing.stderr
    assert (
        stepledger("events", run_id, "--json", cwd=tmp_path).stdout.splitlines() == before
    )  # nothing recorded

    (tmp_path / "go").touch()
    resumed = stepledger("resume", run_id, *flags, cwd=tmp_path, env={"GITHUB_TOKEN": "the-resumer-s-token"})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "got.txt").read_text() == "the-resumer-s-token"
    log = stepledger("events", run_id, "--json", cwd=tmp_path).stdout
    assert TOKEN not in log and "the-resumer-s-token" not in log
    resumed_events = [json.loads(line) for line in log.splitlines() if '"run.resumed"' in line]
    recorded = resumed_events[-1]["payload"]["workstream"]  # None unless the file was taken again
    assert recorded is None if not flags else recorded["steps"][0]["env"] == {"GH": "${env.GITHUB_TOKEN}"}


def test_a_folder_is_never_named_after_a_secret(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [
        {"id": "a", "tool": "shell", "tasks": ["true"], "cwd": "work/${env.GITHUB_TOKEN}"}]})  # fmt: skip
    done = stepledger("run", "ws.json", cwd=tmp_path, env={"GITHUB_TOKEN": TOKEN})
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "steps[0].cwd" in line and "GITHUB_TOKEN" in line and "looks secret" in line
    assert TOKEN not in done.stdout + done.stderr
    assert not (tmp_path / "work").exists()
    assert not (tmp_path / ".stepledger" / "runs").exists()  # refused before anything was recorded


def test_a_value_that_does_not_parse_is_not_printed(tmp_path: Path) -> None:
    write(tmp_path / "ws.json", {"id": "ws", "steps": [
        {"id": "a", "tool": "shell", "tasks": ["true"], "timeout": "${env.STEP_TIMEOUT:-5}"}]})  # fmt: skip
    done = stepledger("run", "ws.json", cwd=tmp_path, env={"STEP_TIMEOUT": TOKEN})
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "${env.STEP_TIMEOUT:-5}" in line and TOKEN not in line


def test_run_folders_are_the_users_alone_and_steps_keep_their_umask(tmp_path: Path, db_url: str) -> None:
    # A folder an older version made readable by others is narrowed too.
    (tmp_path / ".stepledger").mkdir(mode=0o700)
    (tmp_path / ".stepledger" / "runs").mkdir(mode=0o755)
    os.chmod(tmp_path / ".stepledger" / "runs", 0o755)
    write(tmp_path / "ws.json", {"id": "ws", "steps": [
        {"id": "a", "tool": "shell", "cwd": "out",
         "tasks": ["echo made > made.txt; mkdir sub"]}]})  # fmt: skip
    done = stepledger("run", "ws.json", "--db", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [run_id] = run_ids(db_url)
    runs = tmp_path / ".stepledger" / "runs"
    assert mode(runs) == 0o700
    assert mode(runs / run_id) == 0o700
    assert mode(runs / run_id / "orchestrator.log") == 0o600
    # Where .stepledger/ does not exist yet (the log lives in PostgreSQL), the run creates it 0700.
    (tmp_path / "elsewhere").mkdir()
    write(
        tmp_path / "elsewhere" / "ws.json",
        {"id": "ws", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"]}]},
    )
    pg_or_sqlite = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'other.db'}"
    done = stepledger("run", "ws.json", "--db", pg_or_sqlite, cwd=tmp_path / "elsewhere")
    assert done.returncode == 0, done.stdout + done.stderr
    assert mode(tmp_path / "elsewhere" / ".stepledger") == 0o700
    assert mode(tmp_path / "elsewhere" / ".stepledger" / "runs") == 0o700
    # The step's own files follow the user's umask (022 here), not the orchestrator's folders.
    assert mode(tmp_path / "out" / "made.txt") == 0o644
    assert mode(tmp_path / "out" / "sub") == 0o755
