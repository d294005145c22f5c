"""`stepledger audit ...` through the real command line (a subprocess), on the sample log."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from audit_sample import T0, fill

from stepledger.store.connect import open_store


def stepledger(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command line with the log at `db`, piped as a user pipes it (no COLUMNS)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([sys.executable, "-m", "stepledger.cli", *args, "--db", db],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip


@pytest.fixture
def sample_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite log file holding the sample runs."""
    store = open_store(sqlite_url)
    fill(store, monkeypatch)
    store.close()
    return sqlite_url


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_failures_as_json_lines_and_csv(sample_db: str) -> None:
    result = stepledger("audit", "failures", "--json", db=sample_db)
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [(r["step_id"], r["count"]) for r in rows] == [("lint", 2), ("test", 2)]
    result = stepledger("audit", "failures", "--csv", "--since", "2027-01-15T08:10:00+00:00", db=sample_db)
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["step_id"], r["count"], r["last_run_id"]) for r in table] == [("lint", "1", "r2")]


def test_each_command_prints_a_table(sample_db: str) -> None:
    for args, expected in [
        (("timeline", "r1"), "test"),
        (("durations", "--workstream", "ws-a"), "11.0s"),
        (("retries",), "after a retry by alice"),
        (("actions", "--last", "3650d"), "no deploy on fridays"),
        (("why", "r1", "deploy"), "deploy is blocked: it depends on test"),
    ]:
        result = stepledger("audit", *args, db=sample_db)
        assert result.returncode == 0, (args, result.stderr)
        assert expected in result.stdout, (args, result.stdout)


@pytest.mark.parametrize("db_upgrade", [True, False], ids=["db-upgrade", "on-open"])
def test_a_log_at_0006_lists_its_drain_once_upgraded(sample_db: str, db_upgrade: bool) -> None:
    """The sample's drain (r3's first Ctrl-C) in a log left at 0006, whose views did not list drains:
    `db upgrade`, or the audit command itself, migrates the log and `audit actions` lists it."""
    from stepledger.store import migrate
    from stepledger.store.connect import engine_for

    engine = engine_for(sample_db)
    try:
        migrate.downgrade(engine, "0006")
    finally:
        engine.dispose()
    if db_upgrade:
        upgraded = stepledger("db", "upgrade", db=sample_db)
        assert upgraded.returncode == 0 and "upgraded 0006 → 0007" in upgraded.stdout, upgraded.stderr
    result = stepledger("audit", "actions", "--json", "--run", "r3", db=sample_db)
    assert result.returncode == 0, result.stderr
    assert [(r["action"], r["actor"], r["step_id"], r["reason"]) for r in json_lines(result.stdout)] == [
        ("drain", "carol", None, "Ctrl-C"), ("cancel", "carol", None, "stuck")
    ]  # fmt: skip
    table = stepledger("audit", "actions", db=sample_db)
    assert table.returncode == 0 and "│ drain  │ carol │ r3" in table.stdout, table.stdout


def test_timeline_json_and_html(sample_db: str, tmp_path: Path) -> None:
    page = tmp_path / "r1.html"
    result = stepledger("audit", "timeline", "r1", "--json", "--html", str(page), db=sample_db)
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [(r["step_id"], r["attempt"], r["outcome"]) for r in rows][:2] == [
        ("build", 1, "passed"),
        ("lint", 1, "failed"),
    ]
    assert rows[0]["started_at"] == T0 + 1
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_why_as_json(sample_db: str) -> None:
    result = stepledger("audit", "why", "r3", "after", "--json", db=sample_db)
    assert result.returncode == 0, result.stderr
    (answer,) = json_lines(result.stdout)
    assert answer["waits_on"] == [{"step_id": "only", "state": "running"}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("timeline", "nope"), "no run 'nope' in this log"),
        (("failures", "--since", "last tuesday"), "--since 'last tuesday' is not a date"),
        (("retries", "--last", "7 days"), "--last '7 days' is not a duration"),
        (("actions", "--since", "2027-01-02", "--last", "7d"), "give --since or --last, not both"),
        (
            ("durations", "--since", "2027-01-02", "--until", "2027-01-01"),
            "--until must be later than --since",
        ),
        (("why", "r1", "nope"), "run r1 has no step 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sample_db: str, args: tuple[str, ...], message: str) -> None:
    result = stepledger("audit", *args, db=sample_db)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
def test_the_commands_answer_on_postgresql(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(pg_url)
    fill(store, monkeypatch)
    store.close()
    result = stepledger("audit", "retries", "--json", "--workstream", "ws-a", db=pg_url)
    assert result.returncode == 0, result.stderr
    assert [(r["run_id"], r["step_id"]) for r in json_lines(result.stdout)] == [
        ("r1", "lint"), ("r1", "test"), ("r2", "lint")
    ]  # fmt: skip
    result = stepledger("audit", "durations", "--csv", db=pg_url)
    assert result.returncode == 0 and "ws-a,build,2,11.0," in result.stdout, result.stdout


def test_a_real_run_then_its_audit(tmp_path: Path) -> None:
    """Run a small shell workstream whose `flaky` step fails once, then audit the log it left."""
    workstream = {
        "id": "ws-audit-e2e",
        "steps": [
            {"id": "prepare", "tool": "shell", "tasks": ["echo ready > ready.txt"]},
            {"id": "flaky", "tool": "shell", "depends_on": ["prepare"],
             "tasks": ["test -f tried || { touch tried; echo 'first try fails' >&2; exit 3; }"],
             "retry": {"strategy": "fixed", "initial_delay": 0.1}, "circuit_breaker": {"max_attempts": 3}},
        ],
    }  # fmt: skip
    (tmp_path / "ws.json").write_text(json.dumps(workstream))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    run = subprocess.run([sys.executable, "-m", "stepledger.cli", "run", "ws.json", "--db", db, "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    run_id = json_lines(run.stdout)[0]["run_id"]

    timeline = json_lines(stepledger("audit", "timeline", run_id, "--json", db=db).stdout)
    assert [(r["step_id"], r["attempt"], r["outcome"]) for r in timeline] == [
        ("prepare", 1, "passed"), ("flaky", 1, "failed"), ("flaky", 2, "passed")
    ]  # fmt: skip
    assert timeline[1]["exit_code"] == 3
    (retried,) = json_lines(stepledger("audit", "retries", "--json", db=db).stdout)
    assert (retried["step_id"], retried["attempts"], retried["resolution"]) == (
        "flaky", 2, "passed on attempt 2 (automatic retry)"
    )  # fmt: skip
    durations = {
        r["step_id"]: r for r in json_lines(stepledger("audit", "durations", "--json", db=db).stdout)
    }
    assert set(durations) == {"prepare", "flaky"} and durations["flaky"]["count"] == 1
    page = tmp_path / "run.html"
    assert stepledger("audit", "timeline", run_id, "--html", str(page), db=db).returncode == 0
    assert "flaky: passed" in page.read_text()


def test_the_commands_import_neither_sqlalchemy_nor_rich(sample_db: str) -> None:
    """Importing SQLAlchemy (and building an engine) or rich cost more than most answers take."""
    script = f"""
import sys
from stepledger.cli import audit_commands as commands
from stepledger.engine.api import Stepledger
questions = {{
    "timeline": ("r1",), "failures": (), "durations": (), "retries": (), "actions": (), "why": ("r1", "lint"),
}}
api = Stepledger({sample_db!r})
for name, args in questions.items():
    rows = api.audit(name, *args)
    rows = rows["events"] if name == "why" else rows
    for json_output, csv_output in ((False, False), (True, False), (False, True)):
        commands._print(name, rows, json_output, csv_output)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic", "rich")), file=sys.stderr)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"
    assert "after a retry by alice" in result.stdout and '"step_id":"lint"' in result.stdout


def test_csv_columns_keep_their_order(sample_db: str) -> None:
    result = stepledger("audit", "retries", "--csv", db=sample_db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "run_id,workstream_id,step_id,attempts,failures,passed_on,last_attempt,last_outcome,"
        "first_started_at,last_finished_at,last_failure,resolution"
    )
    empty = stepledger("audit", "retries", "--csv", "--workstream", "nope", db=sample_db)
    assert empty.stdout == "run_id,step_id,attempts,failures,last_failure,resolution\n"


def test_a_retries_table_builds_only_the_rows_it_shows(
    sample_db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepledger.cli import audit_commands
    from stepledger.engine import audit

    store = open_store(sample_db)
    try:
        every = audit.retries(store)
        newest, total = audit.newest_retries(store, newest=2)
    finally:
        store.close()
    assert (newest, total) == (every[-2:], 3)
    monkeypatch.setattr(audit_commands, "TABLE_LIMIT", 1)
    audit_commands.retries(db=sample_db)
    out = capsys.readouterr().out
    assert "after a retry by alice" in out and "automatic retry" not in out  # r2's lint, the newest
    assert "the newest 1 of 3 rows" in out


def test_timeline_without_a_run_shows_the_newest_and_names_it(sample_db: str) -> None:
    newest = json_lines(stepledger("runs", "--json", db=sample_db).stdout)[0]["run_id"]
    implied = stepledger("audit", "timeline", "--json", db=sample_db)
    named = stepledger("audit", "timeline", newest, "--json", db=sample_db)
    assert implied.returncode == 0, implied.stderr
    assert json_lines(implied.stdout) == json_lines(named.stdout) != []
    text = stepledger("audit", "timeline", "latest", db=sample_db).stdout
    assert f"{newest} ·" in text and "latest ·" not in text
