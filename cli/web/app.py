"""The web view's ASGI app: its pages, its live streams and its actions, on the application API.

Every page is one or a few API calls rendered by a Jinja2 template (autoescaped: text from the log
shows as text). Sync handlers run on Starlette's thread pool; each thread keeps its own
`Stepledger`, so a SQLite connection is only ever used by the thread that opened it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from stepledger.engine.api import Stepledger, error_types

from . import views
from .actions import action_routes
from .guard import Guard, session_of
from .live import AttemptLogs, LiveHub, Subscription, follow_log, run_snapshot, step_rows, stream
from .runlist import RunList
from .security import LOCAL_NAMES, SESSION_COOKIE
from .settings import WebSettings

HERE = Path(__file__).parent
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ApiPerThread:
    """One `Stepledger` per thread, opened on first use and closed with the server."""

    def __init__(self, db: str | None, workdir: str) -> None:
        self.db, self.workdir = db, workdir
        self._local = threading.local()
        self._all: list[Stepledger] = []
        self._lock = threading.Lock()

    def __call__(self) -> Stepledger:
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._local.api = self.new()
            with self._lock:
                self._all.append(api)
        return api

    def new(self) -> Stepledger:
        return Stepledger(self.db, self.workdir)

    def close(self) -> None:
        with self._lock:
            for api in self._all:
                api.close()
            self._all.clear()


def create_app(settings: WebSettings) -> Starlette:
    """The app: routes, the access guard, the live hub started and stopped with the server."""
    loader = jinja2.FileSystemLoader(str(HERE / "templates"))
    templates = Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True))
    templates.env.filters["clock"] = lambda at: time.strftime("%H:%M:%S", time.localtime(at))
    apis = ApiPerThread(settings.db, settings.workdir)
    run_list = RunList()
    hub = LiveHub(apis.new, run_list)
    access = settings.access

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        session, new = session_of(request, access)
        page = {
            "request": request, "access": access, "ledger": settings.ledger, "bind": settings.bind,
            "csrf": access.csrf_for(session), "note": request.query_params.get("note", ""),
            **context,
        }  # fmt: skip
        response = templates.TemplateResponse(request, name, page, status_code=status)
        if new:
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        return response

    def problem(request: Request, error: BaseException, status: int = 400) -> Response:
        return render(request, "problem.html", {"message": str(error)}, status)

    def answer(request: Request, name: str, build: Callable[[Stepledger], dict[str, Any]]) -> Response:
        try:
            context = build(apis())
        except error_types() as error:
            return problem(request, error, _status_of(error))
        return render(request, name, context)

    def runs(request: Request) -> Response:
        flt = views.RunFilter.of(request.query_params)
        return answer(request, "runs.html", lambda api: {
            **views.runs_page(api, flt, run_list.rows(api)), "filter": flt, "statuses": views.STATUSES,
        })  # fmt: skip

    def run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        note = settings.resumer.failure(run_id)
        return answer(
            request, "run.html", lambda api: {**views.run_page(api, run_id), "resume_failure": note}
        )

    def step(request: Request) -> Response:
        run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
        return answer(request, "step.html", lambda api: views.step_page(api, run_id, step_id))

    def timeline(request: Request) -> Response:
        try:
            page = apis().audit("timeline_html", request.path_params["run_id"])
        except error_types() as error:
            return PlainTextResponse(str(error), _status_of(error))
        # The page is the CLI's static timeline: inline CSS, no script at all.
        csp = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
        return Response(page, media_type="text/html", headers={"Content-Security-Policy": csp})

    def audit(request: Request) -> Response:
        view = request.path_params["view"]
        if view not in views.AUDIT_COLUMNS:
            return problem(request, LookupError(f"no audit view {view!r}"), 404)
        try:
            rows, filters = views.audit_rows(apis(), view, request.query_params)
        except error_types() as error:
            return problem(request, error, 400)
        if request.query_params.get("format") == "csv":
            return Response(views.audit_csv(view, rows), media_type="text/csv", headers={
                "Content-Disposition": f'attachment; filename="stepledger-{view}.csv"'})  # fmt: skip
        shown = (
            rows[-views.AUDIT_TABLE_LIMIT :]
            if view in ("retries", "actions")
            else rows[: views.AUDIT_TABLE_LIMIT]
        )
        table = [
            [views.audit_cell(key, row.get(key)) for key, _ in views.AUDIT_COLUMNS[view]] for row in shown
        ]
        csv_link = urlencode({**{k: v for k, v in filters.items() if v}, "format": "csv"})
        return render(request, "audit.html", {
            "view": view, "views": list(views.AUDIT_COLUMNS),
            "headers": [h for _, h in views.AUDIT_COLUMNS[view]],
            "table": table, "total": len(rows), "filters": filters, "csv_link": csv_link,
        })  # fmt: skip

    async def live_runs(request: Request) -> Response:
        q = request.query_params
        statuses = frozenset([q["status"]] if q.get("status") else [])
        sub = hub.subscribe(
            Subscription(asyncio.get_running_loop(), None, statuses, q.get("workstream") or None)
        )
        # Subscribed first, then the snapshot: the rows the page shows as they are now, and the runs
        # that started after its newest (a run that ended or began between the page and its stream).
        shown = [run_id for run_id in q.get("shown", "").split(",") if run_id]
        try:
            rows = await run_in_threadpool(lambda: run_list.snapshot(apis(), shown))
        except error_types() as error:
            hub.unsubscribe(sub)
            return PlainTextResponse(str(error), _status_of(error))
        wanted = [views.run_row(r) for r in rows if sub.wants_row(r)]
        first = [{"kind": "runs", "runs": wanted}] if wanted else []
        return StreamingResponse(stream(hub, sub, first), media_type="text/event-stream", headers=SSE_HEADERS)

    async def live_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        since = _int(request.query_params.get("after"))
        sub = hub.subscribe(Subscription(asyncio.get_running_loop(), run_id))
        try:  # subscribed first, then the snapshot: what happens in between arrives twice, never not
            first = await run_in_threadpool(lambda: run_snapshot(apis(), run_id, since, hub))
        except error_types() as error:
            hub.unsubscribe(sub)
            return PlainTextResponse(str(error), _status_of(error))
        return StreamingResponse(
            stream(hub, sub, [first]), media_type="text/event-stream", headers=SSE_HEADERS
        )

    async def live_log(request: Request) -> Response:
        run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
        attempt = _int(request.query_params.get("attempt"))  # 0: the step has not started yet
        offset = _int(request.query_params.get("offset"))
        try:
            now = await run_in_threadpool(lambda: _step_row(apis(), run_id, step_id, hub))
        except error_types() as error:
            return PlainTextResponse(str(error), _status_of(error))
        if now["attempt"] > attempt:  # the page is behind: a newer attempt started since
            attempt, offset = now["attempt"], 0
        sub = hub.subscribe(Subscription(asyncio.get_running_loop(), run_id, follows_log=True))
        logs = AttemptLogs(apis, run_id, step_id)
        body = follow_log(hub, sub, step_id, attempt, offset, logs, first=now)
        return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start()
        try:
            yield
        finally:
            await run_in_threadpool(hub.stop)
            apis.close()

    routes = [
        Route("/", runs),
        Route("/runs/{run_id}", run),
        Route("/runs/{run_id}/timeline", timeline),
        Route("/runs/{run_id}/steps/{step_id:path}", step),
        Route("/audit/{view}", audit),
        Route("/live/runs", live_runs),
        Route("/live/runs/{run_id}", live_run),
        Route("/live/runs/{run_id}/steps/{step_id:path}", live_log),
        *[
            Route(path, endpoint, methods=["POST"])
            for path, endpoint in action_routes(apis, settings, problem)
        ],
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(Guard, access=access)]
    if access.token is None:
        # No token on 127.0.0.1: a page of another site that re-points its own name at 127.0.0.1
        # (DNS rebinding) would be "same origin" and could read pages and their CSRF tokens. Such a
        # request names the other site in its Host header: only this machine's names are served.
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=sorted(LOCAL_NAMES)))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.hub = hub
    return app


def _step_row(api: Stepledger, run_id: str, step_id: str, hub: LiveHub) -> dict[str, Any]:
    """The step as a live page shows it: RunNotFound for an unknown run, and the log_files error
    (which names the run's steps) for an unknown step."""
    status = api.status(run_id)
    hub.saw(status)
    rows = step_rows(status)
    if step_id not in rows:
        api.log_files(run_id, step_id)
        raise LookupError(step_id)  # log_files raised already: it knows no such step either
    return rows[step_id]


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _status_of(error: BaseException) -> int:
    """404 for a run or step the log does not have, 409 for an action the state does not allow."""
    name = type(error).__name__
    if name in ("RunNotFound", "StepNotFound") or "has no step" in str(error):
        return 404
    if name in ("IllegalStepAction", "UserInputError"):
        return 409
    if name == "DatabaseUnavailable":  # e.g. a fleet's tables unreachable for a moment
        return 503
    return 400
