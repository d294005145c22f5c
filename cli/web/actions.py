"""Actions from the page: cancel a run; retry, skip or mark-passed a step; resume a run.

The same rules as the command line, through the same API calls, each recorded with who (the
login name the server runs under, as the CLI records it) and the reason, which a page must give.
Only by POST with the page's CSRF token (or, from a script, with the bearer token), and never in
read-only mode. When nobody drives the run
any more (a retry after the run ended), the run is resumed by a `stepledger resume` process of its
own, as `stepledger retry` resumes it in the terminal: an orchestrator never runs inside the web
server (resumer.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from stepledger.engine.api import error_types

from .guard import sent_bearer_token, session_of

if TYPE_CHECKING:
    from stepledger.engine.api import Stepledger

    from .settings import WebSettings

STEP_ACTIONS = ("retry", "skip", "mark-passed")
MAX_REASON = 2000


class ActionRefused(Exception):
    """An action the page may not take (read-only, a missing token, no reason)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _checked_form(request: Request, settings: WebSettings) -> dict[str, str]:
    """The action's form, once the server allows actions and the CSRF token matches the session."""
    if settings.access.read_only:
        raise ActionRefused("this stepledger ui is read-only (started with --read-only)", 403)
    body = (await request.body()).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    session, new = session_of(request, settings.access)
    if sent_bearer_token(request, settings.access):
        pass  # a script with the token: no cookie rides along, so no CSRF token is asked
    elif new or not settings.access.csrf_matches(session, form.get("csrf")):
        raise ActionRefused("the form's CSRF token is missing or wrong: reload the page and try again", 403)
    reason = form.get("reason", "").strip()
    if not reason:
        raise ActionRefused("give a reason: it is kept in the log with the action", 400)
    if len(reason) > MAX_REASON:
        raise ActionRefused(f"the reason is longer than {MAX_REASON} characters", 400)
    form["reason"] = reason
    return form


def who(request: Request) -> str:
    """Who acted from the page, as recorded: the page has no user accounts, only a token, so the
    address the request came from (`web@127.0.0.1`)."""
    host = request.client.host if request.client else "unknown"
    return f"web@{host}"


def action_routes(
    apis: Callable[[], Stepledger],
    settings: WebSettings,
    problem: Callable[[Request, BaseException, int], Response],
) -> list[tuple[str, Callable[[Request], Awaitable[Response]]]]:
    """The POST routes: (path, handler)."""

    async def act(request: Request, do: Callable[[Stepledger, dict[str, str]], str]) -> Response:
        run_id = request.path_params["run_id"]
        try:
            form = await _checked_form(request, settings)
            note = await run_in_threadpool(lambda: do(apis(), form))
        except ActionRefused as refused:
            return problem(request, refused, refused.status)
        except error_types() as error:
            return problem(request, error, 409)
        return RedirectResponse(f"/runs/{quote(run_id, safe='')}?note={quote(note, safe='')}", 303)

    async def cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        return await act(
            request, lambda api, form: api.cancel(run_id, reason=form["reason"], by=who(request))
        )

    async def step_action(request: Request) -> Response:
        run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
        action = request.path_params["action"]
        if action not in STEP_ACTIONS:
            return problem(request, LookupError(f"no step action {action!r}"), 404)

        def do(api: Stepledger, form: dict[str, str]) -> str:
            done = api.intervene(action, run_id, step_id, reason=form["reason"], by=who(request))
            if done.next == "elsewhere":
                return f"{done.message}; {done.detail}, and the decision is in the log for it"
            if done.next == "resume":
                return f"{done.message}; resuming the run (pid {settings.resumer.start(run_id)})"
            return done.message

        return await act(request, do)

    async def resume(request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def do(api: Stepledger, form: dict[str, str]) -> str:
            plan = api.plan_resume(run_id)  # RunNotFound, one line, for a run the log lacks
            if plan.run.status != "running":
                return _not_resumable(run_id, plan.run.status)
            return f"resuming run {run_id} (pid {settings.resumer.start(run_id)})"

        return await act(request, do)

    return [
        ("/runs/{run_id}/cancel", cancel),
        ("/runs/{run_id}/resume", resume),
        ("/runs/{run_id}/steps/{step_id:path}/{action}", step_action),
    ]


def _not_resumable(run_id: str, status: Any) -> str:
    return f"run {run_id} is {status}: there is nothing to resume (retry a step to go on)"
