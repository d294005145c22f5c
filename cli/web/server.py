"""Serving the web view: the socket bound first (so `--port 0` can say which port it got), then
uvicorn on it, with a short grace on shutdown (live pages hold their connections open)."""

from __future__ import annotations

import socket
import sys
from types import FrameType

import uvicorn

from .app import create_app
from .live import LiveHub
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


class _Server(uvicorn.Server):
    """uvicorn's server, which ends the live pages' streams as soon as it is told to stop: it waits
    for open connections before the app's own shutdown, and a live page never closes its own."""

    def __init__(self, config: uvicorn.Config, hub: LiveHub) -> None:
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.hub.close_streams()
        super().handle_exit(sig, frame)


def serve(settings: WebSettings, sock: socket.socket) -> None:
    """Serve until Ctrl-C or SIGTERM."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=GRACE_S, lifespan="on"
    )
    sys.stdout.flush()
    _Server(config, app.state.hub).run(sockets=[sock])
