"""`ui`: serve the live web view of the log (cli/web/), on 127.0.0.1 unless told otherwise.

The web stack is imported inside the command: no other command pays for it.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .common import DbOption

HostOption = Annotated[
    str,
    typer.Option("--host", help="Address to listen on; anything but 127.0.0.1/localhost/::1 needs a token."),
]
PortOption = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="STEPLEDGER_UI_TOKEN", show_envvar=True,
        help="Access token the pages ask for (generated, printed once, when listening beyond this machine).",
    ),
]  # fmt: skip
ReadOnlyOption = Annotated[bool, typer.Option("--read-only", help="Pages only: no cancel, retry, skip, ...")]


def ui(
    db: DbOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8765,
    token: TokenOption = None,
    read_only: ReadOnlyOption = False,
) -> None:
    """Serve a live web view of the runs: pages that follow the log, actions, the audit views."""
    from stepledger.engine.api import Stepledger

    from .web.resumer import Resumer
    from .web.security import LOCAL_HOSTS, Access, decide_token
    from .web.server import bind, serve
    from .web.settings import WebSettings

    workdir = os.getcwd()
    with Stepledger(db, workdir) as api:
        ledger = api.db_current()["url"]  # the URL with its password masked: the only form pages show
    asked, generated = decide_token(host, token)
    access = Access(asked, read_only=read_only, exposed=host not in LOCAL_HOSTS)
    try:
        sock = bind(host, port)
    except OSError as error:
        typer.echo(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another --port", err=True
        )
        raise typer.Exit(2) from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    settings = WebSettings(db, workdir, access, ledger, bind=url.removeprefix("http://").rstrip("/"),
                           resumer=Resumer(db, workdir))  # fmt: skip
    typer.echo(f"stepledger ui on {url} · log {ledger}" + (" · read-only" if read_only else ""))
    if generated:
        # Printed once, here: the only place it is ever shown. Open this address to get in.
        typer.echo(f"access token (printed once): open {url}?token={asked}")
    elif asked:
        typer.echo("the pages ask for the token given by --token / STEPLEDGER_UI_TOKEN")
    if access.exposed:
        typer.echo(f"exposed: listening on {host}, reachable from other machines")
    serve(settings, sock)


def register(app: typer.Typer) -> None:
    """Add the `ui` command to `app`."""
    app.command()(ui)
