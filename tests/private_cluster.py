"""A throw-away PostgreSQL cluster (initdb + pg_ctl on a free port): the only server a test restarts.

The server a developer or CI uses is never stopped or restarted; a test that needs a database
restart (tests/crash, tests/fleet) starts one of these with the `private_cluster` fixture.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


class PrivateCluster:
    """A cluster of its own, in a temporary folder, removed at the end."""

    def __init__(self) -> None:
        version = sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())[-1]
        self.bin = Path("/usr/lib/postgresql") / version / "bin"
        # initdb refuses to run as root; the cluster's folder must be reachable by its owner.
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        self.data = Path(tempfile.mkdtemp(prefix="stepledger-pg-", dir="/tmp"))
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.pg_ctl("start")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / program), *args], check=True, timeout=120,
                       capture_output=True)  # fmt: skip

    def pg_ctl(self, action: str, *extra: str) -> None:
        # Room for a fleet: every worker holds a few connections (Procrastinate's, its own pool's).
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "log"), "-w",
                  *extra, action)  # fmt: skip

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        yield cluster
    finally:
        cluster.remove()
