"""The studio's web app (FastAPI + Jinja templates, a little plain JavaScript, no front-end build).

Three parts, one server:

- **Runs**: the run and evaluation folders it serves (:mod:`interplay.studio.runs_index`), each
  with its summary, plots and a filterable episode list; a transcript per episode.
- **Studies**: head-to-head human studies (:mod:`interplay.studio.study`): judges open
  ``/judge/<token>`` (their pages: :mod:`interplay.studio.judge_routes`); ``/studies/<id>`` shows
  the results to the operator and exports them.
- **Talk**: a person plays one role against an agent the operator allowed
  (:mod:`interplay.studio.talk`, its pages :mod:`interplay.studio.talk_routes`); the finished
  episode is logged like any run.

This module holds :func:`create_app` (the middleware, the access checks and page helpers the route
modules share through a :class:`~interplay.studio.state.StudioContext`), the runs pages and the
operator's study pages; what it serves is :class:`~interplay.studio.state.StudioState`.

Access (:mod:`interplay.studio.access`): runs, transcripts, talk, study results and exports need
the operator's admin token; a judge's link reaches only that judge's pairs. Requests for another
host name are 400, state-changing requests from another origin or without the form's CSRF token
403. Every request is validated: an unknown judge token is 403, a tampered pair id or side 400, a
body or text over the limits 413; model text is always escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from interplay.studio.access import (
    CSRF_FIELD,
    SECURITY_HEADERS,
    UNSAFE_METHODS,
    Access,
    allowed_hosts,
    cross_origin,
)
from interplay.studio.agent_factory import AgentFactory
from interplay.studio.exports import EXPORTS
from interplay.studio.judge_routes import register_judge_routes
from interplay.studio.rendering import item_href, render_turn_text
from interplay.studio.runs_index import episode_row, filter_episodes
from interplay.studio.state import (
    DEFAULT_TALK_AGENTS,
    Denied,
    StudioContext,
    StudioState,
)
from interplay.studio.study import CRITERIA
from interplay.studio.talk_routes import register_talk_routes

HERE = Path(__file__).parent
#: the largest request body accepted (a judgement or a turn is a few KiB)
MAX_BODY_BYTES = 64 * 1024
__all__ = ["DEFAULT_TALK_AGENTS", "EXPORTS", "MAX_BODY_BYTES", "Denied", "StudioState", "create_app"]


def create_app(runs: Sequence[str | Path] = (), studies: Sequence[str | Path] = (), data: Sequence[str] = ("demo",),
               talk_out: str | Path = "runs/talk", agents: AgentFactory | None = None, *,
               admin_token: str | None = None, hosts: Sequence[str] = (),
               talk_agents: Sequence[str] = DEFAULT_TALK_AGENTS) -> FastAPI:
    """The studio app serving ``runs`` (folders holding runs, searched a few levels down),
    ``studies`` (study files of ``interplay study create``) and talk sessions on ``data`` with
    ``talk_agents`` (the only specs the talk page takes), whose episodes are logged under
    ``talk_out``. ``admin_token``: the operator's token (random when None: read it from
    ``app.state.access.admin_token``); ``hosts``: host names answered besides the loopback ones."""
    state = StudioState([Path(r) for r in runs], [Path(s) for s in studies], list(data), Path(talk_out), agents,
                        talk_agents)
    access = Access(admin_token)
    app = FastAPI(title="Interplay Studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = state
    app.state.access = access
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["turn_html"] = render_turn_text
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("admin", access.is_admin(request))
        return templates.TemplateResponse(request, name, context, status_code=status)

    def error(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "error.html", status=status, status_code=status, message=message)

    def need_admin(request: Request) -> None:
        if not access.is_admin(request):
            raise Denied("this page is the operator's: open the link `interplay studio` printed "
                         "(with ?token=...) in this browser first")

    def need_csrf(request: Request, form: Any, scope: str) -> None:
        if scope == "admin" and access.bearer(request):
            return  # a header, not an ambient cookie: nothing another page could make a browser send
        if not access.csrf_ok(scope, form.get(CSRF_FIELD)):
            raise Denied("this form has no valid CSRF token (it did not come from this page, or the "
                         "studio restarted with another admin token): reload the page and try again")

    @app.exception_handler(Denied)
    async def denied(request: Request, exc: Denied):
        return error(request, 403, exc.message)

    admin_only = [Depends(need_admin)]

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.method in UNSAFE_METHODS and (why := cross_origin(request)) is not None:
            return Response(f"refused: {why}", status_code=403, media_type="text/plain",
                            headers=SECURITY_HEADERS)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return Response(f"request body over {MAX_BODY_BYTES} bytes", status_code=413, media_type="text/plain",
                            headers=SECURITY_HEADERS)
        if request.method == "POST" and length is None:  # a chunked body: read it under the cap
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return Response(f"request body over {MAX_BODY_BYTES} bytes", status_code=413,
                                    media_type="text/plain", headers=SECURITY_HEADERS)
            request._body = body  # starlette re-reads it from here
        token = request.query_params.get("token")
        if request.method == "GET" and token is not None:  # the operator's first visit, as in Jupyter
            if not access.is_admin_token(token):
                response = error(request, 403, "wrong admin token")
            else:
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                path = "/" + request.url.path.lstrip("/")  # never "//host": no redirect off the studio
                target = path + ("?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in rest) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(access.admin_cookie, access.admin_cookie_value(), httponly=True,
                                    samesite="strict", secure=request.url.scheme == "https")
        else:
            response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # the outermost layer: a request for any other host name (DNS rebinding) is 400 on every route
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(hosts), www_redirect=False)

    # -- runs (the operator's) ----------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, dependencies=admin_only)
    def runs_page(request: Request):
        entries = sorted(state.runs.refresh(), key=lambda e: e.run_id)
        return page(request, "runs.html", entries=entries, studies=sorted(state.studies))

    @app.get("/runs/{run_id:path}/episodes/{episode_id}", response_class=HTMLResponse, dependencies=admin_only)
    def episode_page(request: Request, run_id: str, episode_id: str, raw: bool = False):
        entry = state.runs.get(run_id)
        if entry is None:
            return error(request, 404, "no such run")
        episode = next((e for e in entry.episodes() if e.episode_id == episode_id), None)
        if episode is None:
            return error(request, 404, "no such episode in this run")
        href = item_href(f"/runs/{quote(run_id)}")
        return page(request, "episode.html", entry=entry, ep=episode, raw=raw, href=href)

    @app.get("/runs/{run_id:path}/item", response_class=HTMLResponse, dependencies=admin_only)
    def item_page(request: Request, run_id: str, title: str = ""):
        entry = state.runs.get(run_id)
        if entry is None:
            return error(request, 404, "no such run")
        catalogue = state.catalogue(entry.data())
        item = catalogue.resolve(title) if catalogue is not None and title else None
        seen = []  # what the user was shown about it in this run's grounded turns
        for ep in entry.episodes():
            for turn in ep.turns:
                for fact in turn.meta.get("about", []) or []:
                    if isinstance(fact, dict) and fact.get("title") == title and fact not in seen:
                        seen.append(fact)
        return page(request, "item.html", entry=entry, title=title, item=item, facts=seen[:1],
                    has_catalogue=catalogue is not None)

    @app.get("/runs/{run_id:path}/files/{name}", dependencies=admin_only)
    def run_file(request: Request, run_id: str, name: str):
        entry = state.runs.get(run_id)
        path = entry.file(name) if entry is not None else None
        if path is None:
            return error(request, 404, "no such file in this run")
        return FileResponse(path)

    @app.get("/runs/{run_id:path}", response_class=HTMLResponse, dependencies=admin_only)
    def run_page(request: Request, run_id: str, termination: str = "", accepted: str = "",
                 min_turns: str = "", max_turns: str = "", q: str = ""):
        entry = state.runs.get(run_id)
        if entry is None:
            return error(request, 404, "no such run")
        try:
            lo = int(min_turns) if min_turns.strip() else None
            hi = int(max_turns) if max_turns.strip() else None
        except ValueError:
            return error(request, 400, "min_turns and max_turns must be whole numbers")
        episodes = entry.episodes()
        shown = filter_episodes(episodes, termination, accepted, lo, hi, q)
        terminations = sorted({e.termination.value for e in episodes})
        return page(request, "run.html", entry=entry, rows=[episode_row(e) for e in shown], total=len(episodes),
                    terminations=terminations, plots=[f for f in entry.files() if f.endswith(".png")],
                    files=entry.files(), summary=_flat(entry.summary), scorecard=entry.text("scorecard.md"),
                    f={"termination": termination, "accepted": accepted, "min_turns": min_turns,
                       "max_turns": max_turns, "q": q})

    # -- studies: the operator's results ------------------------------------------------------

    @app.get("/studies/{sid}", response_class=HTMLResponse, dependencies=admin_only)
    def study_page(request: Request, sid: str):
        study = state.study(sid)
        if study is None:
            return error(request, 404, "no such study")
        return page(request, "study.html", sid=sid, study=study, results=study.results(), closed=study.closed(),
                    progress=study.progress(), judges=study.judges(), criteria=CRITERIA, exports=EXPORTS,
                    csrf=access.csrf_token("admin"))

    @app.get("/studies/{sid}/export/{name}", dependencies=admin_only)
    def study_export(request: Request, sid: str, name: str):
        study = state.study(sid)
        if study is None or name not in EXPORTS:
            return error(request, 404, "no such study export")
        media = {".json": "application/json", ".csv": "text/csv; charset=utf-8", ".png": "image/png"}
        content = state.exports.get(sid, study, name)
        return Response(content, media_type=media[Path(name).suffix],
                        headers={"Content-Disposition": f'attachment; filename="{quote(sid)}-{name}"'})

    @app.post("/studies/{sid}/close", dependencies=admin_only)
    async def study_close(request: Request, sid: str):
        need_csrf(request, await request.form(), "admin")
        study = state.study(sid)
        if study is None:
            return error(request, 404, "no such study")
        study.close()
        return RedirectResponse(f"/studies/{quote(sid)}", status_code=303)

    # -- a judge's pages and the talk pages: their own modules, on the same helpers ------------

    ctx = StudioContext(state=state, access=access, templates=templates, page=page, error=error,
                        need_admin=need_admin, need_csrf=need_csrf, admin_only=admin_only)
    register_judge_routes(app, ctx)
    register_talk_routes(app, ctx)

    return app


def _flat(summary: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """A summary's scalar figures as (dotted key, value) rows, two levels deep."""
    rows: list[tuple[str, str]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 2:
            rows.extend(_flat(value, name + ".", depth + 1))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        elif isinstance(value, (int, str, bool)) or value is None:
            rows.append((name, str(value)))
    return rows
