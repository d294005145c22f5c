"""The web view of runs on workers (docs/web.md): a step's page shows an attempt's log from the
database when this machine has no file of it (the worker's is elsewhere), with the line saying what
the cap dropped, and follows it live; steps waiting for a worker show so on the run page and its
stream, which changes when a worker takes them although no event is appended; each attempt names
its host and worker.

Real `stepledger worker`s (fleetkit.py), a real driver, the app in process (Starlette's test client)
for pages and a real `stepledger ui` process for the live streams, all on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import html
import http.client
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from fleetkit import STEPLEDGER, Fleet, cli, driver, driver_env, query, wait_for, workstream
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))  # the web tests' helpers
from webtools import ui_server

from stepledger.cli.web import views
from stepledger.cli.web.app import create_app
from stepledger.cli.web.live import LiveHub, Subscription, run_snapshot
from stepledger.cli.web.resumer import Resumer
from stepledger.cli.web.runlist import RunList
from stepledger.cli.web.security import Access
from stepledger.cli.web.settings import WebSettings
from stepledger.engine.api import Stepledger

pytestmark = pytest.mark.postgres

MARKUP = "<script>alert('log')</script>"
STREAM_S = 60  # the longest a stream may take to say what a test waits for


def _run_id(db: str) -> str:
    return str(wait_for(lambda: query(db, "SELECT run_id FROM runs"), "the run to be recorded")[0][0])


@contextmanager
def _client(db: str, workdir: Path) -> Iterator[TestClient]:
    settings = WebSettings(
        db, str(workdir), Access(None), "postgresql://…", resumer=Resumer(db, str(workdir))
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8765") as client:
        yield client


def _page(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text[-500:]
    return response.text


@contextmanager
def _stream(
    base: str, path: str
) -> Iterator[Callable[[Callable[[str, dict[str, Any]], bool]], dict[str, Any]]]:
    """`until(wanted)`: the first server-sent event of `base + path` that `wanted(name, data)` accepts,
    failing after STREAM_S (the stream's keep-alives give the deadline a line to be checked at)."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=STREAM_S)
    conn.request("GET", path, headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]

    def until(wanted: Callable[[str, dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + STREAM_S
        name = ""
        while time.monotonic() < deadline:
            line = response.fp.readline().decode()
            assert line, "the stream ended"
            if line.startswith("event: "):
                name = line.removeprefix("event: ").strip()
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if wanted(name, data):
                    return data
        raise AssertionError(f"no such event on {path} within {STREAM_S} s")

    try:
        yield until
    finally:
        conn.close()


def test_a_step_page_shows_the_database_s_copy_of_a_worker_s_log_escaped_with_host_and_worker(
    fleet: Fleet, tmp_path: Path
) -> None:
    cap = 4096
    m1 = fleet.start("m1", env_extra={"STEPLEDGER_FLEET_LOG_BYTES": str(cap)})
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "talk", "tasks": [f"echo \"{MARKUP}\"; echo said-by-talk"]},
        {"id": "big", "tasks": ["seq 1 100000; echo THE END"]},
    ])  # fmt: skip
    run = driver(fleet.db, ws, drv)
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out
    run_id = _run_id(fleet.db)
    worker = query(
        fleet.db, "SELECT DISTINCT worker FROM stepledger_fleet_attempts WHERE run_id = %s", run_id
    )
    assert len(worker) == 1 and re.fullmatch(r"m1:\d+", worker[0][0])
    assert not (drv / ".stepledger" / "runs" / run_id / "talk.1.log").exists()  # the worker's is elsewhere
    local = (m1 / ".stepledger" / "runs" / run_id / "talk.1.log").read_text()
    with _client(fleet.db, drv) as client:
        talk = _page(client, f"/runs/{run_id}/steps/talk")
        big = _page(client, f"/runs/{run_id}/steps/big")
    # The log's lines, from the database, as text: the markup a step printed is escaped.
    assert "said-by-talk" in talk and MARKUP not in talk
    assert "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;" in talk
    shown = re.search(r'<pre class="log" data-attempt="1">(.*?)</pre>', talk, re.S)
    assert shown and html.unescape(shown.group(1)) == local  # the worker's log, whole
    assert "the copy its worker streams into the database" in talk
    # Where it ran: the host and the worker process of the attempt ledger.
    assert f'on <span class="host">m1</span> (worker <span class="worker">{worker[0][0]}</span>)' in talk
    # A log over the cap: its end, after the line saying how much the database did not keep.
    pre = re.search(r'<pre class="log" data-attempt="1">(.*?)</pre>', big, re.S)
    assert pre, big[-2000:]
    first, rest = pre.group(1).split("\n", 1)
    whole = (m1 / ".stepledger" / "runs" / run_id / "big.1.log").read_bytes()
    assert first == (
        f"[stepledger: the first {len(whole) - cap:,} bytes of this log are not kept in the database"
        " (STEPLEDGER_FLEET_LOG_BYTES): they stay on the worker&#39;s machine]"
    )
    assert rest.encode() == whole[-cap:] and "THE END" in rest
    # The page's stream starts after what the page shows: at the end of the whole log.
    assert f"offset={len(whole)}" in big


def test_a_step_page_follows_a_worker_s_log_from_the_database_while_it_runs(
    fleet: Fleet, tmp_path: Path
) -> None:
    m1 = fleet.start("m1")
    drv = tmp_path / "driver"
    drv.mkdir()
    go1, go2 = tmp_path / "go1", tmp_path / "go2"
    task = (f"echo line-1; while [ ! -e {go1} ]; do sleep 0.05; done; echo \"middle {MARKUP}\";"
            f" while [ ! -e {go2} ]; do sleep 0.05; done; echo the-end")  # fmt: skip
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [task]}])
    run = driver(fleet.db, ws, drv)
    try:
        run_id = _run_id(fleet.db)
        local = m1 / ".stepledger" / "runs" / run_id / "x.1.log"
        with (
            ui_server(drv, fleet.db) as ui,
            _stream(ui.url, f"/live/runs/{run_id}/steps/x?attempt=0&offset=0") as until,
        ):
            text, states = "", []

            def seen(name: str, data: dict[str, Any]) -> bool:
                nonlocal text
                if name == "log":
                    text += data["text"]
                elif name == "state":
                    states.append(data["state"])
                return True

            while "\nline-1\n" not in text:
                until(seen)
            assert not (drv / ".stepledger" / "runs" / run_id / "x.1.log").exists() and local.is_file()
            go1.touch()
            while "\nmiddle " not in text:
                until(seen)
            assert "\nthe-end\n" not in text
            go2.touch()
            # The log's end (written with the attempt's outcome), and the step's new state.
            while "\nthe-end\n" not in text or "passed" not in states:
                until(seen)
        # The stream carries the text as it is (the page sets it as text): the worker's log, whole.
        assert text == local.read_text()
    finally:
        go1.touch()
        go2.touch()
        out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out


def test_steps_waiting_for_a_worker_show_so_and_change_live_when_a_worker_takes_them(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start("cpu-box")  # serves only the default queue
    drv = tmp_path / "driver"
    drv.mkdir()
    go = tmp_path / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done"
    ws = workstream(drv / "ws.json", [
        {"id": "prep", "tasks": ["true"]},
        {"id": "train", "queue": "gpu", "tasks": [hold], "depends_on": ["prep"]},
        {"id": "tune", "queue": "gpu", "tasks": [hold], "depends_on": ["prep"]},
    ])  # fmt: skip
    run = driver(fleet.db, ws, drv)
    try:
        run_id = _run_id(fleet.db)
        waiting = "waiting for a worker (queue gpu)"
        with _client(fleet.db, drv) as client:
            wait_for(
                lambda: f"2 {waiting}" in _page(client, f"/runs/{run_id}"),
                "the run page to show both waiting",
            )
            page = _page(client, f"/runs/{run_id}")
            row = re.search(r'<tr data-step="train">.*?</tr>', page, re.S)
            assert row and f'<span class="state waiting">{waiting}</span>' in row.group(0)
            assert f'<span class="state waiting">2 {waiting}</span>' in page  # the legend
            assert re.search(r'class="node state waiting" data-step="train"', page)
            step = _page(client, f"/runs/{run_id}/steps/train")
            assert f'id="step-state">{waiting}</span>' in step and "no worker has taken it yet" in step
        with ui_server(drv, fleet.db) as ui, _stream(ui.url, f"/live/runs/{run_id}") as until:
            shown = until(lambda n, d: n == "run")
            assert [
                (s["state"], s["shown"], s["look"]) for s in shown["steps"] if s["step_id"] == "train"
            ] == [("running", waiting, "waiting")]
            before = query(fleet.db, "SELECT count(*) FROM events WHERE run_id = %s", run_id)
            # One gpu worker with one slot: it takes one step, the other is queued for it. No event
            # says either: the fleet does.
            fleet.start("gpu-box", "--queue", "gpu")
            latest: dict[str, tuple[str, str]] = {}

            def both_shown(name: str, data: dict[str, Any]) -> bool:
                assert data["events"] == []
                latest.update({s["step_id"]: (s["shown"], s["look"]) for s in data["steps"]})
                return sorted(v for k, v in latest.items() if k != "prep") == [
                    ("queued (queue gpu)", "queued"),
                    ("running", "running"),
                ]

            until(both_shown)
            assert query(fleet.db, "SELECT count(*) FROM events WHERE run_id = %s", run_id) == before
    finally:
        go.touch()
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out


def test_a_submitted_run_shows_waiting_for_a_worker_to_drive_it_until_one_does(
    fleet: Fleet, tmp_path: Path
) -> None:
    drv = tmp_path / "driver"
    drv.mkdir()
    go = tmp_path / "go"
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [f"while [ ! -e {go} ]; do sleep 0.05; done"]}])
    done = cli(fleet.db, "submit", str(ws), cwd=drv)  # no worker is alive: nobody drives it yet
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    undriven = "running (waiting for a worker to drive it)"
    with _client(fleet.db, drv) as client:
        assert f'id="run-status">{undriven}</span>' in _page(client, f"/runs/{run_id}")
    try:
        with ui_server(drv, fleet.db) as ui, _stream(ui.url, f"/live/runs/{run_id}") as until:
            assert until(lambda n, d: n == "run")["shown_status"] == undriven
            fleet.start("m1")
            until(lambda n, d: n == "run" and d["shown_status"] == "running")
            go.touch()
            until(lambda n, d: n == "run" and d["shown_status"] == "passed")
    finally:
        go.touch()


class _Page:
    """Stands for an open page's event loop: keeps what the live thread pushes to the page."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def call_soon_threadsafe(self, push: Callable[..., None], message: dict[str, Any]) -> None:
        self.sent.append(message)


def _open_page(hub: LiveHub, api: Stepledger, run_id: str) -> tuple[_Page, dict[str, Any]]:
    """A run page opened on `hub`: its subscription, and the snapshot it starts with (app.py's)."""
    page = _Page()
    hub.subscribe(Subscription(cast(asyncio.AbstractEventLoop, page), run_id=run_id))
    return page, run_snapshot(api, run_id, 0, hub)


def _looks(hub: LiveHub, api: Stepledger, times: int) -> None:
    """The live thread's looks at the fleet, one after the other, their FLEET_LOOK_S waits skipped."""
    for _ in range(times):
        hub._next_look = 0.0
        hub._look_at_fleet(api)


def test_the_live_thread_sends_a_run_s_steps_again_only_when_what_waits_for_a_worker_changed(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The look compares the fleet's answer with what the pages were shown, which `status` filters:
    a job status leaves out (here one the test leaves for a step the log does not say runs) must
    not make every look send the run's steps again; a worker taking a step is sent, once."""
    drv = tmp_path / "driver"
    drv.mkdir()
    go = tmp_path / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done"
    ws = workstream(drv / "ws.json", [
        {"id": "train", "queue": "gpu", "tasks": [hold]},
        {"id": "tune", "queue": "gpu", "tasks": [hold]},
        {"id": "report", "queue": "gpu", "tasks": ["true"], "depends_on": ["train"]},
    ])  # fmt: skip
    run = driver(fleet.db, ws, drv)  # no worker yet: both gpu steps wait for one
    try:
        run_id = _run_id(fleet.db)
        with Stepledger(fleet.db, drv) as api:
            wait_for(lambda: sorted(api.fleet_waiting(run_id)) == ["train", "tune"], "both to wait")
            query(fleet.db, "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
                            " SELECT 'nobody', task_name, jsonb_set(args, '{spec,step_id}', '\"report\"')"
                            " FROM procrastinate_jobs WHERE args->'spec'->>'run_id' = %s"
                            " AND args->'spec'->>'step_id' = 'train' RETURNING id", run_id)  # fmt: skip
            assert sorted(api.fleet_waiting(run_id)) == ["report", "train", "tune"]
            hub = LiveHub(lambda: Stepledger(fleet.db, drv), RunList())
            page, snapshot = _open_page(hub, api, run_id)
            waiting = "waiting for a worker (queue gpu)"
            assert {s["step_id"]: s["shown"] for s in snapshot["steps"]} == {
                "train": waiting, "tune": waiting, "report": "pending",
            }  # fmt: skip
            _looks(hub, api, 3)
            assert page.sent == []  # nothing changed: nothing is sent
            # One gpu worker with one slot: it takes one step, and the other is queued for it.
            fleet.start("gpu-box", "--queue", "gpu")
            wait_for(lambda: len(api.fleet_waiting(run_id)) == 2, "a worker to take one of them")
            _looks(hub, api, 3)
            assert len(page.sent) == 1, page.sent  # sent once, and not again while nothing changes
            shown = {s["step_id"]: (s["shown"], s["look"]) for s in page.sent[0]["steps"]}
            assert sorted([shown["train"], shown["tune"]]) == [
                ("queued (queue gpu)", "queued"), ("running", "running"),
            ]  # fmt: skip
    finally:
        go.touch()
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out


def test_the_live_thread_asks_the_fleet_only_about_runs_on_workers_with_a_running_step(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run on PostgreSQL run here (no --on-workers) has nothing on the fleet, and a run on workers
    with no running step has nothing that can wait for a worker: the looks leave both alone."""
    go = tmp_path / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.05; done"
    ws = workstream(tmp_path / "ws.json", [{"id": "x", "tasks": [hold]}])
    local = subprocess.Popen(
        [*STEPLEDGER, "run", str(ws), "--db", pg_url], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=driver_env(),
    )  # fmt: skip
    try:
        started = "SELECT run_id FROM events WHERE type = 'step.started'"
        [(local_run,)] = wait_for(lambda: query(pg_url, started), "the local run's step to start")
        submitted = cli(pg_url, "submit", str(ws), cwd=tmp_path)  # no worker: nobody drives it yet
        assert submitted.returncode == 0, submitted.stderr
        undriven = submitted.stdout.strip()
        with Stepledger(pg_url, tmp_path) as api:
            asked: list[str] = []
            answer = api.fleet_waiting

            def fleet_waiting(run_id: str) -> dict[str, dict[str, Any]]:
                asked.append(run_id)
                return answer(run_id)

            monkeypatch.setattr(api, "fleet_waiting", fleet_waiting)
            hub = LiveHub(lambda: Stepledger(pg_url, tmp_path), RunList())
            pages = {}
            for run_id in (local_run, undriven):
                pages[run_id], snapshot = _open_page(hub, api, run_id)
                assert snapshot["status"] == "running"
            _looks(hub, api, 3)
            assert asked == []
            assert all(page.sent == [] for page in pages.values())
    finally:
        go.touch()
    out, _ = local.communicate(timeout=120)
    assert local.returncode == 0, out


def test_a_log_of_many_small_chunks_is_read_by_its_end_and_in_pieces_with_what_the_cap_dropped(
    pg_url: str, tmp_path: Path
) -> None:
    """What the step page and its stream read of the database's copy (Stepledger.fleet_log_part): a
    log streamed as many small chunks (a line each half second) over the cap."""
    import psycopg

    from stepledger.engine.api import Stepledger
    from stepledger.engine.fleet import schema
    from stepledger.engine.fleet.log_stream import AttemptLog
    from stepledger.engine.fleet.settings import conninfo

    path = tmp_path / "x.1.log"
    key = ("run-small", "x", 1)
    whole = b""
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        log = AttemptLog(key, str(path), cap=1000)
        for n in range(200):  # 200 chunks of 11 bytes: the first 1,200 bytes are dropped
            line = f"line {n:05d}\n".encode()
            whole += line
            with path.open("ab") as f:
                f.write(line)
            assert log.copy(conn)
    with Stepledger(pg_url, tmp_path) as api:
        end = api.fleet_log_part(*key, None, 300)  # the page: the last 300 bytes
        assert end is not None and end.data == whole[-300:] and end.start == len(whole) - 300
        assert (end.kept_from, end.end) == (len(whole) - 1000, len(whole))
        page = views.database_log_text(api, *key)  # all the database keeps, under the page's 256 KB
        assert page is not None and page["cut"] == 0 and page["offset"] == len(whole)
        assert page["text"].encode().endswith(b"machine]\n" + whole[-1000:])
        assert api.fleet_log_part("run-small", "x", 2, None, 300) is None  # no such attempt's log
        shown, offset = b"", 0  # the stream: from the start, 64 bytes at a time
        while (part := api.fleet_log_part(*key, offset, 64)) is not None and part.data:
            assert len(part.data) <= 64
            shown += part.text_before(offset) + part.data
            offset = part.start + len(part.data)
    first, rest = shown.split(b"\n", 1)
    assert first == (
        b"[stepledger: the first 1,200 bytes of this log are not kept in the database"
        b" (STEPLEDGER_FLEET_LOG_BYTES): they stay on the worker's machine]"
    )
    assert rest == whole[-1000:]


def test_a_fleet_database_that_cannot_be_reached_is_one_line_not_a_driver_error() -> None:
    """The step page and the run page read the fleet on a kept connection: a database that went
    away (or refuses more clients) is the store's DatabaseUnavailable, which a page shows as one
    line (503), not psycopg's error, which it would show as an Internal Server Error."""
    from stepledger.engine.fleet.reading import FleetReader
    from stepledger.store.errors import DatabaseUnavailable

    reader = FleetReader("postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/nowhere")  # nothing on port 1
    for look in (lambda: reader.waiting_attempts("run-x"), lambda: reader.log_part(("run-x", "x", 1), 0, 10)):
        with pytest.raises(DatabaseUnavailable, match=r"^cannot read the fleet's tables: ") as caught:
            look()
        assert "\n" not in str(caught.value) and "s3cret-pw" not in str(caught.value)
