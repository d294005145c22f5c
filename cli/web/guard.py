"""The door: every request but the static files shows the token (if one is asked) before it gets in.

A browser shows it once, as `?token=...`, and is sent back to the same page without it, holding a
session cookie instead (so the token stays out of the history and of Referer headers); a script
sends `Authorization: Bearer TOKEN`. Every response carries headers that keep the pages' scripts
to the server's own files and the pages out of other sites' frames.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from .security import SESSION_COOKIE, Access, new_session

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'self'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
}
ASK_FOR_TOKEN = (
    "this stepledger ui asks for its access token: open the address it printed at start "
    "(…/?token=…), or send 'Authorization: Bearer TOKEN'\n"
)


class Guard(BaseHTTPMiddleware):
    """Let in who shows the token (or anyone, when none is asked), and set the safety headers."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._let_in(request, call_next)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _let_in(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        access = self.access
        if access.token is None or request.url.path.startswith("/static/"):
            return await call_next(request)
        offered = request.query_params.get("token")
        if offered is not None:
            if not access.token_matches(offered):
                return PlainTextResponse("wrong token\n" + ASK_FOR_TOKEN, 401)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, 303)
            response.set_cookie(SESSION_COOKIE, access.session_for_token(), httponly=True, samesite="strict")
            return response
        if sent_bearer_token(request, access):
            return await call_next(request)
        if access.session_valid(request.cookies.get(SESSION_COOKIE)):
            return await call_next(request)
        return PlainTextResponse(ASK_FOR_TOKEN, 401)


def session_of(request: Request, access: Access) -> tuple[str, bool]:
    """The browser's session value, and whether it is new (to be set as a cookie).

    With a token, the session is the one the token gave; without, any value this browser holds, or
    a fresh one. (A script that sends the bearer token acts without a session: `sent_bearer_token`.)
    """
    held = request.cookies.get(SESSION_COOKIE)
    if access.token is not None:
        return access.session_for_token(), held != access.session_for_token()
    if held and access.session_valid(held):
        return held, False
    return new_session(), True


def sent_bearer_token(request: Request, access: Access) -> bool:
    """Whether the request carries `Authorization: Bearer TOKEN` with the right token.

    Such a request may act without the page's CSRF token: CSRF is a forged request that rides on a
    browser's cookie, and another site cannot make a browser send this header (a cross-site request
    with it needs a CORS preflight, which the server never grants).
    """
    bearer = request.headers.get("authorization", "")
    return (
        access.token is not None
        and bearer.startswith("Bearer ")
        and access.token_matches(bearer.removeprefix("Bearer ").strip())
    )
