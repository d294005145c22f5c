"""Every page and action of the web view, in process (Starlette's TestClient), on a real SQLite ledger
written by real `stepledger run` processes: status codes, content, escaping, refused actions."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from failure_scripts import fails_times, spawn_cli, wait_for
from starlette.testclient import TestClient
from webtools import (
    HOSTILE,
    HOSTILE_ERROR,
    csrf_of,
    events_of,
    hostile_workstream,
    passing_workstream,
    run_ws,
)

from stepledger.cli.web import views
from stepledger.cli.web.app import create_app
from stepledger.cli.web.resumer import Resumer
from stepledger.cli.web.security import SESSION_COOKIE, Access
from stepledger.cli.web.settings import WebSettings
from stepledger.engine.api import Stepledger

TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """A folder with a log of three runs: passed, failed (with markup in ids and errors), passed."""
    workdir = tmp_path_factory.mktemp("web")
    db = f"sqlite:///{workdir / 'ledger.db'}"
    runs = {
        "first": run_ws(workdir, db, passing_workstream("ws-first"), "first.json"),
        "hostile": run_ws(workdir, db, hostile_workstream(), "hostile.json"),
        "last": run_ws(workdir, db, passing_workstream("ws-last"), "last.json"),
    }
    return workdir, db, runs


def client_for(workdir: Path, db: str, access: Access | None = None) -> TestClient:
    settings = WebSettings(db, str(workdir), access or Access(None), "sqlite:///ledger.db",
                           resumer=Resumer(db, str(workdir)))  # fmt: skip
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8765", follow_redirects=False)


@pytest.fixture
def client(ledger: tuple[Path, str, dict[str, str]]) -> Iterator[TestClient]:
    workdir, db, _ = ledger
    with client_for(workdir, db) as c:
        yield c


def without_own_script(page: str) -> str:
    return page.replace('<script src="/static/live.js" defer></script>', "")


def test_runs_page_lists_every_run_newest_first(client: TestClient, ledger: tuple[Path, str, dict]) -> None:
    runs = ledger[2]
    page = client.get("/")
    assert page.status_code == 200
    text = page.text
    assert "3 in all" in text
    assert text.index(runs["last"]) < text.index(runs["hostile"]) < text.index(runs["first"])
    assert "ws-first" in text and "1 passed" in text
    assert "2 passed, 1 failed, 1 blocked" in text


def test_runs_page_filters_by_status_workstream_and_time(
    client: TestClient, ledger: tuple[Path, str, dict]
) -> None:
    runs = ledger[2]
    failed = client.get("/?status=failed").text
    assert runs["hostile"] in failed and runs["first"] not in failed and "1 in all" in failed
    by_ws = client.get("/?workstream=ws-last").text
    assert runs["last"] in by_ws and runs["first"] not in by_ws
    future = client.get("/?since=2999-01-01").text
    assert "No run matches." in future
    bad = client.get("/?last=soon")
    assert bad.status_code == 400
    assert "is not a duration" in bad.text


def test_runs_page_is_paginated(
    client: TestClient, ledger: tuple[Path, str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    runs = ledger[2]
    first = client.get("/").text
    assert runs["last"] in first and runs["hostile"] in first and runs["first"] not in first
    assert "page 1 of 2" in first and 'rel="next"' in first
    second = client.get("/?page=2").text
    assert runs["first"] in second and runs["last"] not in second and 'rel="prev"' in second


def test_run_page_shows_each_step_state_error_graph_and_events(
    client: TestClient, ledger: tuple[Path, str, dict]
) -> None:
    run_id = ledger[2]["hostile"]
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    text = page.text
    for state in ("passed", "tripped", "blocked"):
        assert f'<span class="state {state}">{state}</span>' in text
    assert "exit_code: &lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;" in text  # the last error
    assert 'class="graph"' in text and 'class="node state tripped"' in text
    assert "run " + run_id + " finished: failed" in text  # the events, in words
    assert f'data-live="/live/runs/{run_id}?after=' in text
    assert client.get(f"/runs/{run_id}/timeline").status_code == 200


def test_everything_from_the_log_is_escaped(client: TestClient, ledger: tuple[Path, str, dict]) -> None:
    run_id = ledger[2]["hostile"]
    pages = [
        "/", f"/runs/{run_id}", f"/runs/{run_id}/steps/{quote(HOSTILE, safe='')}",
        f"/runs/{run_id}/timeline", "/audit/failures", f"/audit/retries?run={run_id}",
    ]  # fmt: skip
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>" not in without_own_script(page.text), path
        assert "<i>web</i>" not in page.text, path
    step_page = client.get(f"/runs/{run_id}/steps/{quote(HOSTILE, safe='')}").text
    assert "b&lt;script&gt;alert(1)&lt;/script&gt;" in step_page


def test_step_page_shows_each_attempt_its_log_tests_and_outputs(
    client: TestClient, ledger: tuple[Path, str, dict]
) -> None:
    run_id = ledger[2]["hostile"]
    a = client.get(f"/runs/{run_id}/steps/a").text
    assert "Attempt 1" in a and "hello from a" in a  # the attempt's log file
    assert "<code>test 1 = 1</code>" in a and ">pass<" in a  # its acceptance test
    d = client.get(f"/runs/{run_id}/steps/d").text
    assert "<th>answer</th><td>42</td>" in d  # the step's outputs
    hostile = client.get(f"/runs/{run_id}/steps/{quote(HOSTILE, safe='')}").text
    assert "exit 3" in hostile and "tripped" in hostile
    pending = client.get(f"/runs/{run_id}/steps/c").text
    assert "No attempt has started yet." in pending


def test_a_step_page_without_the_log_file_shows_the_output_the_log_recorded(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The attempt ran on another machine (or its folder was cleaned): the page shows the output
    excerpt of step.failed, escaped, instead of an empty log."""
    run_id = run_ws(tmp_path, sqlite_url, hostile_workstream(), "ws.json")
    for log in (tmp_path / ".stepledger" / "runs" / run_id).glob("b*.log"):
        log.unlink()
    with client_for(tmp_path, sqlite_url) as c:
        page = c.get(f"/runs/{run_id}/steps/{quote(HOSTILE, safe='')}").text
    assert "the log file is not on this machine; the output the log recorded:" in page
    assert "&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;" in page and HOSTILE_ERROR not in page
    assert '<pre class="log" data-attempt="1"></pre>' not in page


def test_an_unknown_run_or_step_is_404_with_one_line(
    client: TestClient, ledger: tuple[Path, str, dict]
) -> None:
    run_id = ledger[2]["first"]
    run = client.get("/runs/run-nope")
    assert run.status_code == 404 and "no run &#39;run-nope&#39; in this log" in run.text
    step = client.get(f"/runs/{run_id}/steps/nope")
    assert step.status_code == 404 and "has no step &#39;nope&#39;" in step.text
    assert "Traceback" not in run.text + step.text
    assert client.get("/audit/nothing").status_code == 404
    assert client.get("/live/runs/run-nope").status_code == 404


def test_audit_views_with_filters_and_csv(client: TestClient, ledger: tuple[Path, str, dict]) -> None:
    run_id = ledger[2]["hostile"]
    failures = client.get("/audit/failures")
    assert failures.status_code == 200 and "<th>error signature</th>" in failures.text
    assert "b&lt;script&gt;alert(1)&lt;/script&gt;" in failures.text
    durations = client.get("/audit/durations?workstream=ws-first").text
    assert "ws-first" in durations and "ws-last" not in durations
    assert client.get("/audit/retries").status_code == 200
    assert client.get("/audit/actions").status_code == 200
    assert client.get("/audit/failures?since=yesterday-ish").status_code == 400
    csv_page = client.get(f"/audit/failures?run={run_id}&format=csv")
    assert csv_page.status_code == 200 and csv_page.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_page.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_page.text)))
    assert [r["step_id"] for r in rows] == [HOSTILE]  # the CLI's columns, the value as it is
    durations_csv = list(csv.DictReader(io.StringIO(client.get("/audit/durations?format=csv").text)))
    assert {"workstream_id", "step_id", "median_s"} <= set(durations_csv[0])


def test_actions_without_the_csrf_token_are_refused(
    client: TestClient, ledger: tuple[Path, str, dict]
) -> None:
    workdir, db, runs = ledger
    run_id = runs["hostile"]
    before = len(events_of(db, workdir, run_id))
    client.get("/")  # the browser holds a session now, but the form's token is missing or wrong
    for form in ({"reason": "r"}, {"reason": "r", "csrf": "0" * 64}):
        refused = client.post(f"/runs/{run_id}/steps/c/skip", data=form)
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert client.get("/").status_code == 200
    assert len(events_of(db, workdir, run_id)) == before  # nothing recorded


def test_a_step_action_needs_a_reason(client: TestClient, ledger: tuple[Path, str, dict]) -> None:
    runs = ledger[2]
    run_id = runs["hostile"]
    csrf = csrf_of(client.get(f"/runs/{run_id}").text)
    refused = client.post(f"/runs/{run_id}/steps/c/skip", data={"csrf": csrf, "reason": "  "})
    assert refused.status_code == 400 and "give a reason" in refused.text
    wrong = client.post(f"/runs/{run_id}/steps/a/skip", data={"csrf": csrf, "reason": "no"})
    assert wrong.status_code == 409 and "cannot skip step a" in wrong.text  # the CLI's rule, in its words
    unknown = client.post(f"/runs/{run_id}/steps/a/explode", data={"csrf": csrf, "reason": "no"})
    assert unknown.status_code == 404


def test_skip_from_the_page_is_recorded_with_who_and_why(tmp_path: Path, sqlite_url: str) -> None:
    run_id = run_ws(tmp_path, sqlite_url, hostile_workstream(), "ws.json")
    with client_for(tmp_path, sqlite_url) as client:
        csrf = csrf_of(client.get(f"/runs/{run_id}").text)
        done = client.post(f"/runs/{run_id}/steps/{quote(HOSTILE, safe='')}/skip",
                           data={"csrf": csrf, "reason": "flaky <b>infra</b>"})  # fmt: skip
        assert done.status_code == 303
        assert done.headers["location"].startswith(f"/runs/{run_id}?note=")
        shown = client.get(done.headers["location"]).text
        assert f"step {HOSTILE} of run {run_id} skipped".replace("<", "&lt;").replace(">", "&gt;") in shown
        actions = client.get(f"/audit/actions?run={run_id}").text
        assert "flaky &lt;b&gt;infra&lt;/b&gt;" in actions and "web@" in actions
    skipped = [e for e in events_of(sqlite_url, tmp_path, run_id) if e["type"] == "step.skipped"]
    assert skipped and skipped[0]["payload"]["reason"] == "flaky <b>infra</b>"
    assert skipped[0]["payload"]["by"].startswith("web@")  # the page's user, not the server's login


def test_a_script_with_the_bearer_token_acts_without_a_csrf_token(tmp_path: Path, sqlite_url: str) -> None:
    run_id = run_ws(tmp_path, sqlite_url, hostile_workstream(), "ws.json")
    step = quote(HOSTILE, safe="")
    with client_for(tmp_path, sqlite_url, Access(TOKEN, exposed=True)) as client:
        wrong = client.post(f"/runs/{run_id}/steps/{step}/skip", data={"reason": "r"},
                            headers={"Authorization": "Bearer not-the-token"})  # fmt: skip
        assert wrong.status_code == 401
        assert not [e for e in events_of(sqlite_url, tmp_path, run_id) if e["type"] == "step.skipped"]
        done = client.post(f"/runs/{run_id}/steps/{step}/skip", data={"reason": "from a script"},
                           headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert done.status_code == 303, done.text
        assert not client.cookies  # no session was needed, none was handed out
    skipped = [e for e in events_of(sqlite_url, tmp_path, run_id) if e["type"] == "step.skipped"]
    assert [e["payload"]["reason"] for e in skipped] == ["from a script"]


def test_retry_from_the_page_resumes_the_run_until_it_passes(tmp_path: Path, sqlite_url: str) -> None:
    ws = {"id": "ws-retry", "steps": [
        {"id": "flaky", "tool": "shell", "tasks": [fails_times(1, "flaky")],
         "circuit_breaker": {"max_attempts": 1}},
        {"id": "after", "tool": "shell", "tasks": ["echo after"], "depends_on": ["flaky"]},
    ]}  # fmt: skip
    run_id = run_ws(tmp_path, sqlite_url, ws, "ws.json")
    with client_for(tmp_path, sqlite_url) as client, Stepledger(sqlite_url, tmp_path) as api:
        assert api.status(run_id)["status"] == "failed"
        csrf = csrf_of(client.get(f"/runs/{run_id}").text)
        done = client.post(f"/runs/{run_id}/steps/flaky/retry", data={"csrf": csrf, "reason": "fixed it"})
        assert done.status_code == 303 and "resuming+the+run" not in done.headers["location"]
        assert "resuming%20the%20run%20%28pid" in done.headers["location"]
        wait_for(lambda: api.status(run_id)["status"] == "passed", 60, "the resumed run to pass")
        states = {s["step_id"]: s["state"] for s in api.status(run_id)["steps"]}
    assert states == {"flaky": "passed", "after": "passed"}


def test_cancel_from_the_page_stops_a_running_run(tmp_path: Path, sqlite_url: str) -> None:
    ws = {"id": "ws-cancel", "steps": [{"id": "long", "tool": "shell", "tasks": ["sleep 300"]}]}
    path = tmp_path / "ws.json"
    path.write_text(__import__("json").dumps(ws))
    process = spawn_cli("run", str(path), cwd=tmp_path, db=sqlite_url)
    try:
        with Stepledger(sqlite_url, tmp_path) as api:
            wait_for(lambda: _running(api), 60, "the step to start")
        with client_for(tmp_path, sqlite_url) as client, Stepledger(sqlite_url, tmp_path) as api:
            run_id = api.runs()[0]["run_id"]
            page = client.get(f"/runs/{run_id}").text
            assert 'id="cancel-run"' in page
            done = client.post(
                f"/runs/{run_id}/cancel", data={"csrf": csrf_of(page), "reason": "wrong branch"}
            )
            assert done.status_code == 303
            assert process.wait(timeout=60) != 0
            assert api.status(run_id)["status"] == "cancelled"
        cancels = [e for e in events_of(sqlite_url, tmp_path, run_id) if e["type"] == "run.cancel_requested"]
        assert cancels[0]["payload"]["reason"] == "wrong branch"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _running(api: Stepledger) -> bool:
    try:
        runs = api.runs()
    except Exception:  # the run has created the file but not its tables yet
        return False
    return bool(runs) and any(s["state"] == "running" for s in api.status(runs[0]["run_id"])["steps"])


def test_resume_of_a_finished_run_says_there_is_nothing_to_resume(
    client: TestClient, ledger: tuple[Path, str, dict]
) -> None:
    run_id = ledger[2]["first"]
    csrf = csrf_of(client.get(f"/runs/{run_id}").text)
    done = client.post(f"/runs/{run_id}/resume", data={"csrf": csrf, "reason": "go on"})
    assert done.status_code == 303 and "nothing%20to%20resume" in done.headers["location"]


def test_read_only_shows_no_forms_and_refuses_actions(ledger: tuple[Path, str, dict]) -> None:
    workdir, db, runs = ledger
    run_id = runs["hostile"]
    with client_for(workdir, db, Access(None, read_only=True)) as client:
        page = client.get(f"/runs/{run_id}").text
        assert "Read-only" in page and '<form class="run-action"' not in page and "Retry</button>" not in page
        with client_for(workdir, db) as writable:
            csrf = csrf_of(writable.get(f"/runs/{run_id}").text)
        refused = client.post(f"/runs/{run_id}/steps/c/skip", data={"csrf": csrf, "reason": "r"})
        assert refused.status_code == 403 and "read-only" in refused.text


def test_a_token_is_asked_before_any_page(ledger: tuple[Path, str, dict]) -> None:
    workdir, db, runs = ledger
    access = Access(TOKEN, exposed=True)
    with client_for(workdir, db, access) as client:
        for path in ("/", f"/runs/{runs['first']}", "/audit/actions", "/live/runs"):
            assert client.get(path).status_code == 401, path
        assert client.post(f"/runs/{runs['first']}/cancel", data={"reason": "x"}).status_code == 401
        assert client.get("/?token=guess").status_code == 401
        assert client.get("/static/live.js").status_code == 200  # no secret in the static files
        bearer = client.get("/audit/actions", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        entered = client.get(f"/?token={TOKEN}&status=passed")
        assert entered.status_code == 303 and entered.headers["location"] == "/?status=passed"
        assert TOKEN not in entered.headers["set-cookie"]  # the cookie proves the token, it is not it
        assert client.cookies.get(SESSION_COOKIE)
        page = client.get("/")
        assert page.status_code == 200
        assert "This page is exposed" in page.text and TOKEN not in page.text


def test_pages_carry_headers_that_keep_scripts_to_the_server(client: TestClient) -> None:
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "script-src" not in page.headers["content-security-policy"]  # no inline script allowed anywhere
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "SAMEORIGIN"  # no other site frames a page that can act


def test_the_runs_page_shows_a_run_that_started_after_it_was_first_read(
    tmp_path: Path, sqlite_url: str
) -> None:
    first = run_ws(tmp_path, sqlite_url, passing_workstream("ws-one"), "one.json")
    with client_for(tmp_path, sqlite_url) as client:
        assert first in client.get("/").text  # the server has read the run list now
        second = run_ws(tmp_path, sqlite_url, hostile_workstream(), "two.json")
        # run_ws returned once the run ended: the page catches up with every event of it
        wait_for(lambda: second in client.get("/?status=failed").text, 60, "the new run, failed")
        failed = client.get("/?status=failed").text
        assert first not in failed and "1 in all" in failed
        assert "2 in all" in client.get("/").text


def test_a_step_page_carries_the_step_s_actions_unless_read_only(ledger: tuple[Path, str, dict]) -> None:
    workdir, db, runs = ledger
    path = f"/runs/{runs['hostile']}/steps/c"
    with client_for(workdir, db) as client:
        page = client.get(path).text
        assert 'id="act"' in page and f'action="/runs/{runs["hostile"]}/steps/c/retry"' in page
    with client_for(workdir, db, Access(None, read_only=True)) as client:
        assert 'id="act"' not in client.get(path).text


def test_without_a_token_only_this_machine_s_names_are_served(client: TestClient) -> None:
    # A page of another site whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name.
    rebound = client.get("/", headers={"Host": "evil.example:8765"})
    assert rebound.status_code == 400 and "stepledger" not in rebound.text
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200


def test_a_run_page_shows_the_run_s_parameters_escaped(tmp_path: Path, sqlite_url: str) -> None:
    ws = {"id": "ws-params", "parameters": {"target": {"type": "string"}, "dry": {"type": "boolean"}},
          "steps": [{"id": "a", "tool": "shell", "tasks": ["true"]}]}  # fmt: skip
    given = ("--param", "target=<b>prod</b>", "--param", "dry=true")
    run_id = run_ws(tmp_path, sqlite_url, ws, "ws.json", *given)
    with client_for(tmp_path, sqlite_url) as client:
        page = client.get(f"/runs/{run_id}").text
        timeline = client.get(f"/runs/{run_id}/timeline").text  # `audit timeline --html`'s page
    assert '<code id="run-params">target=&lt;b&gt;prod&lt;/b&gt; dry=true</code>' in page
    assert '<code class="params">target=&lt;b&gt;prod&lt;/b&gt; dry=true</code>' in timeline
