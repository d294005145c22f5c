"""The live streams of a real `stepledger ui` process: what another process appends to the log
reaches an open page, without the page asking again."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from failure_scripts import cli, spawn_cli, wait_for
from webtools import HOSTILE, hostile_workstream, passing_workstream, read_sse, run_ws, ui_server

from stepledger.engine.api import Stepledger

READ_TIMEOUT_S = 60  # a stream that says nothing for this long fails the test instead of hanging it


@contextmanager
def sse_stream(base: str, path: str) -> Iterator[Iterator[tuple[str, dict[str, Any]]]]:
    """The server-sent events of `base + path`, as (name, data), read as they arrive."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=READ_TIMEOUT_S)
    try:
        conn.request("GET", path, headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        assert response.status == 200, response.read()[:300]
        assert response.getheader("content-type", "").startswith("text/event-stream")

        def lines() -> Iterator[str]:
            while raw := response.fp.readline():
                yield raw.decode().rstrip("\n")

        yield read_sse(lines())
    finally:
        conn.close()


def until(stream: Iterator[tuple[str, dict[str, Any]]], wanted: Any) -> tuple[str, dict[str, Any]]:
    """The first event that `wanted` accepts."""
    for name, data in stream:
        if wanted(name, data):
            return name, data
    raise AssertionError("the stream ended before the expected event")


def test_a_run_page_stream_starts_with_a_snapshot_then_pushes_each_change(
    tmp_path: Path, sqlite_url: str
) -> None:
    run_id = run_ws(tmp_path, sqlite_url, hostile_workstream(), "ws.json")
    with Stepledger(sqlite_url, tmp_path) as api:
        head = api.head()
    with (
        ui_server(tmp_path, sqlite_url) as ui,
        sse_stream(ui.url, f"/live/runs/{run_id}?after={head}") as events,
    ):
        name, snapshot = next(events)
        assert name == "run" and snapshot["status"] == "failed" and snapshot["events"] == []
        states = {s["step_id"]: s["state"] for s in snapshot["steps"]}
        assert states == {"a": "passed", HOSTILE: "tripped", "c": "blocked", "d": "passed"}
        done = cli("skip", run_id, "c", "--reason", "not needed", "--no-resume", cwd=tmp_path, db=sqlite_url)
        assert done.returncode == 0, done.stderr
        _, update = until(events, lambda n, d: n == "run" and d["events"])
    assert [s["step_id"] for s in update["steps"] if s["state"] == "skipped"] == ["c"]
    text = update["events"][0]["text"]
    assert "[c] Skipped by" in text and text.endswith(": not needed")


def test_the_runs_stream_pushes_a_new_run_and_its_end(tmp_path: Path, sqlite_url: str) -> None:
    run_ws(tmp_path, sqlite_url, passing_workstream("ws-old"), "old.json")
    with ui_server(tmp_path, sqlite_url) as ui, sse_stream(ui.url, "/live/runs?status=passed") as events:
        new = run_ws(tmp_path, sqlite_url, passing_workstream("ws-new"), "new.json")
        _, pushed = until(events, lambda n, d: n == "runs" and any(r["run_id"] == new for r in d["runs"]))
    row = next(r for r in pushed["runs"] if r["run_id"] == new)
    assert row["workstream_id"] == "ws-new" and row["status"] == "passed" and row["steps"] == "1 passed"


def test_a_step_log_is_followed_while_the_step_runs(tmp_path: Path, sqlite_url: str) -> None:
    ws = {"id": "ws-log", "steps": [{"id": "talker", "tool": "shell", "tasks": [
        "echo first line; while [ ! -f go ]; do sleep 0.05; done; echo second line"]}]}  # fmt: skip
    (tmp_path / "ws.json").write_text(json.dumps(ws))
    process = spawn_cli("run", "ws.json", cwd=tmp_path, db=sqlite_url)
    try:
        with Stepledger(sqlite_url, tmp_path) as api:
            wait_for(lambda: _step_attempt(api) > 0, 60, "the step to start")
            run_id = api.runs()[0]["run_id"]
        with ui_server(tmp_path, sqlite_url) as ui:
            path = f"/live/runs/{run_id}/steps/{quote('talker')}?attempt=1&offset=0"
            with sse_stream(ui.url, path) as events:
                name, state = next(events)
                assert name == "state" and state["state"] == "running"
                text = ""
                while "first line" not in text:
                    text += until(events, lambda n, d: n == "log")[1]["text"]
                (tmp_path / "go").touch()
                while "second line" not in text:
                    text += until(events, lambda n, d: n == "log")[1]["text"]
                until(events, lambda n, d: n == "state" and d["state"] == "passed")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _step_attempt(api: Stepledger) -> int:
    try:
        runs = api.runs()
    except Exception:  # the run has created the file but not its tables yet
        return 0
    return int(api.status(runs[0]["run_id"])["steps"][0]["attempt"]) if runs else 0


def test_an_unknown_run_has_no_stream(tmp_path: Path, sqlite_url: str) -> None:
    run_ws(tmp_path, sqlite_url, passing_workstream(), "ws.json")
    with ui_server(tmp_path, sqlite_url) as ui:
        where = urlsplit(ui.url)
        conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
        conn.request("GET", "/live/runs/run-nope")
        response = conn.getresponse()
        assert response.status == 404
        assert b"no run 'run-nope'" in response.read()
        conn.close()


@pytest.mark.postgres
def test_pages_and_streams_on_postgresql_show_no_password(tmp_path: Path, pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    secret = "s3cret-pw-9"
    db = make_url(pg_url).set(password=secret).render_as_string(hide_password=False)
    run_id = run_ws(tmp_path, db, hostile_workstream(), "ws.json")
    with ui_server(tmp_path, db) as ui:
        assert secret not in "".join(ui.lines)
        where = urlsplit(ui.url)
        pages = ["/", f"/runs/{run_id}", f"/runs/{run_id}/steps/a", "/audit/failures", "/audit/actions"]
        bodies = []
        for page in pages:
            conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
            conn.request("GET", page)
            response = conn.getresponse()
            body = response.read().decode()
            conn.close()
            assert response.status == 200, page
            assert secret not in body, page
            bodies.append(body)
        assert run_id in bodies[0] and "postgresql" in bodies[0]  # the log's URL, its password masked
        with sse_stream(ui.url, f"/live/runs/{run_id}?after=0") as events:
            name, snapshot = next(events)
            assert name == "run" and snapshot["status"] == "failed"
            assert secret not in json.dumps(snapshot)
            done = cli("skip", run_id, "c", "--reason", "on pg", "--no-resume", cwd=tmp_path, db=db)
            assert done.returncode == 0, done.stderr
            _, update = until(events, lambda n, d: n == "run" and d["events"])
    assert [s["state"] for s in update["steps"] if s["step_id"] == "c"] == ["skipped"]


def test_the_runs_stream_starts_with_the_rows_shown_and_the_runs_started_since(
    tmp_path: Path, sqlite_url: str
) -> None:
    old = run_ws(tmp_path, sqlite_url, passing_workstream("ws-old"), "old.json")
    with ui_server(tmp_path, sqlite_url) as ui:
        # The page showed `old`; `new` started and ended before the page's stream connected.
        new = run_ws(tmp_path, sqlite_url, hostile_workstream(), "new.json")
        with sse_stream(ui.url, f"/live/runs?shown={old}") as events:
            name, first = next(events)
    assert name == "runs"
    rows = {row["run_id"]: row for row in first["runs"]}
    assert set(rows) == {old, new}
    assert rows[old]["status"] == "passed" and rows[new]["workstream_id"] == "ws-<i>web</i>"
