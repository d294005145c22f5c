"""`stepledger ui` as a process: where it listens, when it asks for a token, its bad input, and that
no other command pays for the web stack."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from failure_scripts import STEPLEDGER, cli
from webtools import passing_workstream, run_ws, ui_server

WEB_STACK = ("starlette", "uvicorn", "jinja2")


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_on_localhost_it_asks_no_token(tmp_path: Path, sqlite_url: str) -> None:
    run_id = run_ws(tmp_path, sqlite_url, passing_workstream(), "ws.json")
    with ui_server(tmp_path, sqlite_url) as ui:
        assert ui.url.startswith("http://127.0.0.1:")
        assert "token" not in ui.lines[0]
        status, page = fetch(ui.url + "/")
    assert status == 200 and run_id in page and "exposed" not in page


def test_beyond_localhost_a_token_is_generated_and_asked(tmp_path: Path, sqlite_url: str) -> None:
    run_ws(tmp_path, sqlite_url, passing_workstream(), "ws.json")
    with ui_server(tmp_path, sqlite_url, "--host", "0.0.0.0") as ui:
        token_line = ui.lines[1]
        assert token_line.startswith("access token (printed once): open http://0.0.0.0:")
        token = token_line.rsplit("?token=", 1)[1].strip()
        assert len(token) >= 24
        assert "exposed" in ui.lines[2]
        local = ui.url.replace("0.0.0.0", "127.0.0.1")
        assert fetch(local + "/")[0] == 401
        status, page = fetch(local + "/", {"Authorization": f"Bearer {token}"})
        assert status == 200 and "This page is exposed on 0.0.0.0:" in page
    assert token not in page


def test_a_token_from_the_environment_is_asked_and_never_printed(tmp_path: Path, sqlite_url: str) -> None:
    run_ws(tmp_path, sqlite_url, passing_workstream(), "ws.json")
    secret = "from-the-environment-123456"
    with ui_server(tmp_path, sqlite_url, env={"STEPLEDGER_UI_TOKEN": secret}) as ui:
        assert secret not in "".join(ui.lines)
        assert fetch(ui.url + "/")[0] == 401
        assert fetch(ui.url + "/", {"Authorization": f"Bearer {secret}"})[0] == 200


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path, sqlite_url: str) -> None:
    run_ws(tmp_path, sqlite_url, passing_workstream(), "ws.json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("ui", "--port", str(port), cwd=tmp_path, db=sqlite_url, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    ]


def test_a_refused_database_url_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([STEPLEDGER, "ui", "--db", "sqlite:///:memory:", "--port", "0"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_other_commands_do_not_import_the_web_stack(tmp_path: Path, sqlite_url: str) -> None:
    run_ws(tmp_path, sqlite_url, passing_workstream(), "ws.json")
    env = {**os.environ, "STEPLEDGER_DB": sqlite_url, "PYTHONPROFILEIMPORTTIME": "1"}
    for args in (["status"], ["runs"], ["--help"]):
        done = subprocess.run([STEPLEDGER, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-500:]
        imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
        assert "typer" in imported  # the profile is there: the check below could fail
        assert not imported & set(WEB_STACK), args
