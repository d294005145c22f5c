"""Who may look and who may act: the access token, the session cookie and its CSRF token.

A page that can cancel runs is a door. On 127.0.0.1 (the default) the machine's own users are the
audience and no token is asked unless one is given; bound anywhere else a token is required. A
browser shows it once (`/?token=...`) and gets a session cookie (HttpOnly, SameSite=Strict)
instead; scripts may send `Authorization: Bearer TOKEN`. Every action is a POST carrying a CSRF
token derived from the session, so another site cannot make a logged-in browser act.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})  # as a Host header names them
SESSION_COOKIE = "stepledger_session"
TOKEN_ENV = "STEPLEDGER_UI_TOKEN"


@dataclass(frozen=True)
class Access:
    """The server's rules: its token (None: none asked), read-only mode, and its private secret."""

    token: str | None
    read_only: bool = False
    exposed: bool = False  # bound to an address other machines may reach
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def token_matches(self, offered: str | None) -> bool:
        """Whether `offered` is the token (constant time); always true when no token is asked."""
        if self.token is None:
            return True
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def session_for_token(self) -> str:
        """A session value that proves the token was shown, without being the token itself."""
        return hmac.new(self.secret, b"session:" + (self.token or "").encode(), hashlib.sha256).hexdigest()

    def session_valid(self, value: str | None) -> bool:
        """Whether the session cookie `value` was given by this server (after the token, if one is asked)."""
        if value is None:
            return False
        if self.token is not None:
            return hmac.compare_digest(value, self.session_for_token())
        return len(value) >= 32

    def csrf_for(self, session: str) -> str:
        """The CSRF token of a session: only a page this server sent to that browser carries it."""
        return hmac.new(self.secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, session: str | None, offered: str | None) -> bool:
        if not session or not offered:
            return False
        return hmac.compare_digest(self.csrf_for(session), offered)


def decide_token(host: str, given: str | None) -> tuple[str | None, bool]:
    """The token the server asks for, and whether it was generated here (to print it once).

    A token given is always asked; bound to a non-local address without one, one is generated.
    """
    if given:
        return given, False
    if host in LOCAL_HOSTS:
        return None, False
    return secrets.token_urlsafe(24), True


def new_session() -> str:
    """A fresh session value for a browser on a server that asks no token."""
    return secrets.token_hex(32)
