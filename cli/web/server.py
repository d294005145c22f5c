"""Serving the web view: the socket bound first (so `--port 0` can say which port it got), then
uvicorn on it, with a short grace on shutdown (live pages hold their connections open)."""

from __future__ import annotations

import socket
import sys

import uvicorn

from .app import create_app
from .settings import WebSettings

GRACE_S = 2  # live pages never close their streams by themselves: don't wait for them long


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (OSError, e.g. the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(settings: WebSettings, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM."""
    config = uvicorn.Config(
        create_app(settings), log_level="warning", access_log=False, timeout_graceful_shutdown=GRACE_S,
        lifespan="on",
    )  # fmt: skip
    sys.stdout.flush()
    uvicorn.Server(config).run(sockets=[sock])
