"""Which database URLs the commands accept, what a read may create, and passwords never shown.

Through the installed command, as a user runs it; PostgreSQL cases use databases (and a role)
created and dropped here, never the server's own `postgres` database.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbs import pg_admin_url

from stepledger.store.redact import mask, remember, secrets_of

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))
ADMIN = pg_admin_url("postgres").replace("+psycopg", "")
READS = (
    ["runs"],
    ["status"],
    ["events"],
    ["audit", "failures"],
    ["logs", "r1"],
    ["replay", "r1", "--verify"],
)


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_DB"}
    environment.update(env or {})
    return subprocess.run(
        [STEPLEDGER, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=environment
    )


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


WORKSTREAM = '{"id": "ws-u", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"]}]}'


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://", "sqlite+pysqlite:///:memory:",
            "sqlite:///file::memory:?uri=true"],
)  # fmt: skip
def test_an_in_memory_sqlite_database_is_refused(url: str, tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text(WORKSTREAM)
    for result in (run("run", "ws.json", "--db", url, cwd=tmp_path),
                   run("run", "ws.json", cwd=tmp_path, env={"STEPLEDGER_DB": url})):  # fmt: skip
        assert "in-memory database" in one_line_error(result)
        assert "ran" not in result.stdout and not (tmp_path / ".stepledger").exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg2://u:pw1234@127.0.0.1/x", "mysql://u:pw1234@h/x", "oracle://u:pw1234@h/x",
     "garbage", "postgresql+asyncpg://u@h/x"],
)  # fmt: skip
def test_an_unsupported_driver_is_one_line_naming_what_is_supported(url: str, tmp_path: Path) -> None:
    for command in (["runs"], ["db", "upgrade"], ["db", "current"]):
        line = one_line_error(run(*command, "--db", url, cwd=tmp_path))
        assert "unsupported database URL" in line and "postgresql+psycopg://" in line, line
        assert "sqlite:///PATH" in line and "pw1234" not in line


def test_reads_create_no_sqlite_file_and_say_there_is_no_log(tmp_path: Path) -> None:
    explicit = f"sqlite:///{tmp_path / 'nothing.db'}"
    for command in READS:
        for db in ([], ["--db", explicit]):
            line = one_line_error(run(*command, *db, cwd=tmp_path))
            assert "no stepledger log at" in line and "run a workstream first" in line, line
    assert list(tmp_path.iterdir()) == []  # no .stepledger folder, no file


@pytest.fixture
def own_database() -> Iterator[str]:
    """A role and an empty database of the same name, owned by it (dropped afterwards).

    A URL naming the role but no database makes libpq pick the database named after the user: the
    form that once created stepledger's tables in the server's `postgres` database.
    """
    name = f"sl_noname_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.mark.postgres
def test_reads_create_no_table_in_a_database_without_a_log(own_database: str, tmp_path: Path) -> None:
    host = ADMIN.split("@", 1)[1].split("/", 1)[0]
    for url in (f"postgresql+psycopg://{own_database}@{host}/",  # the database name left out
                f"postgresql+psycopg://{own_database}@{host}/{own_database}"):  # fmt: skip
        for command in READS:
            line = one_line_error(run(*command, "--db", url, cwd=tmp_path))
            assert "no stepledger log at" in line, line
        # A plan reads history where there is some, and is made without it where there is none.
        (tmp_path / "ws.json").write_text(WORKSTREAM)
        planned = run("plan", "ws.json", "--db", url, cwd=tmp_path)
        assert planned.returncode == 0, planned.stderr
    with psycopg.connect(pg_admin_url(own_database).replace("+psycopg", "")) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == []


def test_the_default_log_is_private_to_its_owner(tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text(WORKSTREAM)
    previous = os.umask(0o022)  # the usual umask, which would leave both readable by everyone
    try:
        result = run("run", "ws.json", cwd=tmp_path)
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / ".stepledger"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = [
        folder / name for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm") if (folder / name).exists()
    ]
    assert folder / "ledger.db" in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


SECRET = "Sup3rS3cret"
# Every form a password can take in --db / STEPLEDGER_DB; the server on port 1 refuses at once.
LEAKY_URLS = [
    f"postgresql+psycopg://postgres@127.0.0.1:1/x?password={SECRET}",
    f"postgresql+psycopg://postgres@127.0.0.1:1/x?sslmode=disable&password={SECRET}&application_name=a",
    f"host=127.0.0.1 port=1 password={SECRET} dbname=x",
    f"host=127.0.0.1 port=1 password='{SECRET} with space' dbname=x",
    f"postgresql+psycopg://u:{SECRET}@[::1:5432/x",  # a malformed IPv6 host: the driver quotes the URL
    f"postgresql+psycopg://u:{SECRET}@[::1]:1/x",
    f"postgresql+psycopg://u:{SECRET}@tail@127.0.0.1:1/x",  # an unencoded `@` in the password
    f"postgresql+psycopg://u:{SECRET}%40tail@127.0.0.1:1/x",
    f"postgresql://u:{SECRET}@127.0.0.1:1/x",
]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_no_form_of_database_url_shows_its_password(url: str, tmp_path: Path) -> None:
    ways: list[tuple[list[str], dict[str, str] | None]] = [  # (arguments, environment)
        (["--db", url], None),
        ([], {"STEPLEDGER_DB": url}),
    ]
    for command in (["runs"], ["events"], ["db", "current", "--json"], ["db", "upgrade"]):
        for args, env in ways:
            result = run(*command, *args, cwd=tmp_path, env=env)
            one_line_error(result)
            assert SECRET not in result.stdout + result.stderr, result.stderr
            assert "tail@" not in result.stderr and "with space" not in result.stderr


def test_an_at_sign_in_the_password_is_the_password_s_not_the_host_s(tmp_path: Path) -> None:
    result = run("runs", "--db", "postgresql+psycopg://u:pw@tail@127.0.0.1:1/x", cwd=tmp_path)
    line = one_line_error(result)
    assert "127.0.0.1" in line and "Connection refused" in line and "tail" not in line, line


def test_mask_hides_each_form_and_a_remembered_password_in_any_words() -> None:
    remember(f"postgresql+psycopg://u:{SECRET}xyz@[::1:5432/x")
    message = f'invalid URI: "postgresql://u:{SECRET}xyz@[::1:5432/x" near {SECRET}xyz'
    assert SECRET not in mask(message)
    assert mask("password = 'a b' host=h") == "password = *** host=h"
    assert mask("x://u:p@a@h/db?sslpassword=zz&x=1") == "x://u:***@h/db?sslpassword=***&x=1"
    assert secrets_of("x://u:p%40ss@h") == {"p%40ss", "p@ss"}
