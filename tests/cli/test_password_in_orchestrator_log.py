"""A database outage during a run writes its notice to orchestrator.log without the password,
whatever form the password takes in the URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))
SECRET = "Sup3rS3cretPw"  # the server trusts local logins: the password is carried, never checked


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["query", "at-sign"])
def test_an_outage_notice_in_orchestrator_log_masks_the_password(
    pg_url: str, tmp_path: Path, form: str
) -> None:
    url = (
        f"{pg_url}?password={SECRET}"
        if form == "query"
        else pg_url.replace("postgres@", f"postgres:{SECRET}@x@")
    )
    database = make_url(pg_url).database
    cut = ("psql -h 127.0.0.1 -U postgres -d postgres -qAt -c \"SELECT count(pg_terminate_backend(pid))"
           f" FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()\"")  # fmt: skip
    workstream = {"id": "ws-outage", "steps": [
        {"id": "cut", "tool": "shell", "tasks": [cut]},  # the reactor's connections are cut under it
        {"id": "after", "tool": "shell", "tasks": ["true"], "depends_on": ["cut"]},
    ]}  # fmt: skip
    (tmp_path / "ws.json").write_text(json.dumps(workstream))
    environment = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_DB"}
    result = subprocess.run([STEPLEDGER, "run", "ws.json", "--db", url], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env=environment)  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    logs = list((tmp_path / ".stepledger" / "runs").glob("*/orchestrator.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "out of reach" in text, text  # the outage happened, and its notice names the database
    assert "***" in text
    for output in (text, result.stdout, result.stderr):
        assert SECRET not in output
