"""The studio's web app (FastAPI + Jinja templates, a little plain JavaScript, no front-end build).

Three parts, one server:

- **Runs**: the run and evaluation folders it serves (:mod:`interplay.studio.runs_index`), each
  with its summary, plots and a filterable episode list; a transcript per episode.
- **Studies**: head-to-head human studies (:mod:`interplay.studio.study`): judges open
  ``/judge/<token>``; ``/studies/<id>`` shows the results to the operator and exports them.
- **Talk**: a person plays one role against an agent the operator allowed
  (:mod:`interplay.studio.talk`); the finished episode is logged like any run.

Access (:mod:`interplay.studio.access`): runs, transcripts, talk, study results and exports need
the operator's admin token; a judge's link reaches only that judge's pairs. Requests for another
host name are 400, state-changing requests from another origin or without the form's CSRF token
403. Every request is validated: an unknown judge token is 403, a tampered pair id or side 400, a
body or text over the limits 413; model text is always escaped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from interplay.agent_specs import AgentSpec
from interplay.catalogue import Catalogue
from interplay.protocol import Role
from interplay.studio.access import (
    CSRF_FIELD,
    SECURITY_HEADERS,
    UNSAFE_METHODS,
    Access,
    allowed_hosts,
    cross_origin,
)
from interplay.studio.agent_factory import AgentFactory
from interplay.studio.blinding import load_catalogue
from interplay.studio.exports import EXPORTS, ExportCache
from interplay.studio.rendering import item_href, render_turn_text
from interplay.studio.runs_index import RunsIndex, episode_row, filter_episodes
from interplay.studio.study import (
    CRITERIA,
    Study,
    SubmissionError,
)
from interplay.studio.talk import TalkRegistry, TalkSession, TurnRejected, talk_run_dir
from interplay.studio.title_search import search_titles

HERE = Path(__file__).parent
#: the largest request body accepted (a judgement or a turn is a few KiB)
MAX_BODY_BYTES = 64 * 1024
#: the longest turn a person may write in the talk page
MAX_TURN_CHARS = 2000
#: what the talk page offers when the operator names no agent (``--talk-agent``): the project's own
#: agents on its default model; never a URL or a model id a request names
DEFAULT_TALK_AGENTS = ("rule", "llm", "zero-shot")
__all__ = ["DEFAULT_TALK_AGENTS", "EXPORTS", "MAX_BODY_BYTES", "StudioState", "create_app"]


class Denied(Exception):
    """A request without the access its route needs (answered 403)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class StudioState:
    """What the app serves: the runs index, the studies by id, the data sets a person may talk
    on, the agents they may talk to, and the live talk sessions."""

    def __init__(self, runs: list[Path], studies: list[Path], data: list[str], talk_out: Path,
                 agents: AgentFactory | None = None, talk_agents: Sequence[str] = DEFAULT_TALK_AGENTS):
        self.talk_out = Path(talk_out)
        self.talk_out.mkdir(parents=True, exist_ok=True)
        self.runs = RunsIndex([*runs, self.talk_out])
        # opened once (a clear error now rather than on the first request); a Study opens its own
        # connection per call, so one object serves every request thread
        self.studies: dict[str, Study] = {}
        for path in studies:
            sid = Path(path).stem
            while sid in self.studies:
                sid += "~"
            self.studies[sid] = Study.open(path)
        self.data = list(data) or ["demo"]
        self.talk_agents = _check_talk_agents(talk_agents)
        self.agents = agents or AgentFactory()
        self.talks = TalkRegistry()
        self.exports = ExportCache()
        self._catalogues: dict[str, Catalogue | None] = {}
        self._lock = threading.Lock()

    def study(self, sid: str) -> Study | None:
        return self.studies.get(sid)

    def judge_study(self, token: str) -> tuple[str, Study] | None:
        """The study a judge token belongs to."""
        for sid, study in self.studies.items():
            if study.judge(token) is not None:
                return sid, study
        return None

    def catalogue(self, data: str | None) -> Catalogue | None:
        """The catalogue of a run's data (``demo`` or a data folder); None when it cannot be read."""
        if not data:
            return None
        with self._lock:
            if data not in self._catalogues:
                self._catalogues[data] = load_catalogue(data)
            return self._catalogues[data]


def _check_talk_agents(specs: Sequence[str]) -> list[str]:
    """The operator's talk agents, each parsed (ValueError naming a bad one), in their spelling."""
    out = []
    for text in specs:
        spec = str(AgentSpec.parse(text))  # ValueError of one line
        if spec not in out:
            out.append(spec)
    if not out:
        raise ValueError("talk agents: give at least one --talk-agent SPEC")
    return out


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

    # -- studies: a judge's pages -------------------------------------------------------------

    def judge_access(request: Request, token: str) -> tuple[str, Study]:
        """The study of a judge link; 403 for an unknown link or a browser bound to another judge."""
        found = state.judge_study(token)
        if found is None:
            raise Denied("unknown judge link")
        if access.other_judge(request, token) and not access.is_admin(request):
            raise Denied("this browser is bound to another judge's link: open this link in another "
                         "browser (or a private window)")
        return found

    def judge_page(request: Request, token: str, name: str, **context: Any) -> HTMLResponse:
        response = page(request, name, token=token, csrf=access.csrf_token(f"judge:{token}"), admin=False,
                        **context)
        if not access.is_admin(request):  # the operator's browser stays free to open every judge's link
            response.set_cookie(access.judge_cookie, access.judge_cookie_value(token), httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.get("/judge/{token}", response_class=HTMLResponse)
    def judge_home(request: Request, token: str):
        _, study = judge_access(request, token)
        pairs = study.pairs_for(token)
        nxt = next((p for p in pairs if not p.done), None)
        return judge_page(request, token, "judge.html", study=study, judge=study.judge(token), pairs=pairs,
                          next_pair=nxt, criteria=CRITERIA, closed=study.closed())

    @app.get("/judge/{token}/results", response_class=HTMLResponse)
    def judge_results(request: Request, token: str):
        _, study = judge_access(request, token)
        if study.closed() is None and not access.is_admin(request):
            raise Denied("the results are shown once the operator closes the study")
        return judge_page(request, token, "judge_results.html", study=study, results=study.results())

    @app.get("/judge/{token}/pair/{pair_id}", response_class=HTMLResponse)
    def judge_pair(request: Request, token: str, pair_id: str):
        _, study = judge_access(request, token)
        pairs = study.pairs_for(token)
        pair = next((p for p in pairs if p.pair_id == pair_id), None)
        if pair is None:
            return error(request, 400, "no such pair for this judge")
        return judge_page(request, token, "judge_pair.html", study=study, pair=pair, total=len(pairs),
                          done=sum(p.done for p in pairs), criteria=CRITERIA, closed=study.closed())

    @app.post("/judge/{token}/pair/{pair_id}")
    async def judge_submit(request: Request, token: str, pair_id: str):
        form = await request.form()
        need_csrf(request, form, f"judge:{token}")
        _, study = judge_access(request, token)
        choices = {c.key: str(form.get(c.key, "")) for c in CRITERIA}
        extra = [k for k in form.keys() if k not in choices and k not in ("comment", CSRF_FIELD)]
        if extra:
            return error(request, 400, f"unknown field(s): {', '.join(sorted(extra))}")
        try:
            study.submit(token, pair_id, choices, str(form.get("comment", "")))
        except SubmissionError as exc:
            return error(request, exc.http_status, str(exc))
        nxt = study.next_unjudged(token)
        target = f"/judge/{token}/pair/{nxt}" if nxt else f"/judge/{token}"
        return RedirectResponse(target, status_code=303)

    # -- talk (the operator's) ----------------------------------------------------------------

    def talk_form(request: Request, message: str | None = None, values: dict | None = None,
                  status: int = 200) -> HTMLResponse:
        return page(request, "talk_new.html", status=status, data=state.data, agents=state.talk_agents,
                    message=message, form=values or {}, csrf=access.csrf_token("admin"))

    @app.get("/talk", response_class=HTMLResponse, dependencies=admin_only)
    def talk_new(request: Request):
        return talk_form(request)

    @app.post("/talk", dependencies=admin_only)
    async def talk_start(request: Request):
        form = await request.form()
        need_csrf(request, form, "admin")
        values = {k: str(form.get(k, "")).strip() for k in ("role", "agent", "data", "record_id", "max_turns")}
        try:
            role = Role(values["role"] or "user")
            agent = values["agent"] or state.talk_agents[0]
            if agent not in state.talk_agents:  # nothing a request names reaches a backend or a key
                raise ValueError(f"agent {agent[:80]!r} is not offered here; choose one of "
                                 f"{', '.join(state.talk_agents)} (the operator adds others with --talk-agent)")
            if values["data"] and values["data"] not in state.data:
                raise ValueError(f"data {values['data']!r} is not served here; choose one of {', '.join(state.data)}")
            max_turns = int(values["max_turns"] or 10)
            if not 2 <= max_turns <= 40:
                raise ValueError("max turns must be between 2 and 40")
            data = values["data"] or state.data[0]
            folder = talk_run_dir(state.talk_out, role, agent, data=data, max_turns=max_turns)
            session = TalkSession.start(folder, role, agent, data=data, record_id=values["record_id"] or None,
                                        max_turns=max_turns, agents=state.agents)
        except ValueError as exc:
            return talk_form(request, str(exc), values, status=400)
        sid = state.talks.add(session)
        return RedirectResponse(f"/talk/{sid}", status_code=303)

    def talk_view(request: Request, sid: str, session: TalkSession, message: str | None = None,
                  status: int = 200) -> HTMLResponse:
        view = session.view()
        run_id = None
        if view.get("done"):
            folder = Path(session.run_dir).resolve()
            entry = next((e for e in state.runs.refresh() if e.path == folder), None)
            run_id = entry.run_id if entry else None
        return page(request, "talk.html", status=status, sid=sid, v=view, message=message, run_id=run_id,
                    max_chars=MAX_TURN_CHARS, csrf=access.csrf_token("admin"))

    @app.get("/talk/{sid}", response_class=HTMLResponse, dependencies=admin_only)
    def talk_page(request: Request, sid: str):
        session = state.talks.get(sid)
        if session is None:
            return error(request, 404, "no such talk session (it may have ended long ago)")
        return talk_view(request, sid, session)

    @app.post("/talk/{sid}/say", response_class=HTMLResponse, dependencies=admin_only)
    async def talk_say(request: Request, sid: str):
        form = await request.form()
        need_csrf(request, form, "admin")
        session = state.talks.get(sid)
        if session is None:
            return error(request, 404, "no such talk session")
        text = str(form.get("text", ""))
        if len(text) > MAX_TURN_CHARS:
            return error(request, 413, f"a turn is at most {MAX_TURN_CHARS} characters")
        titles = [str(t) for t in form.getlist("title") if str(t).strip()]
        try:
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(session.say, str(form.get("action", "")), text, titles)
        except TurnRejected as exc:
            return talk_view(request, sid, session, message=f"not accepted: {exc}", status=400)
        return RedirectResponse(f"/talk/{sid}", status_code=303)

    @app.get("/talk/{sid}/titles", dependencies=admin_only)
    def talk_titles(sid: str, q: str = ""):
        session = state.talks.get(sid)
        if session is None:
            return JSONResponse({"error": "no such talk session"}, status_code=404)
        return JSONResponse(search_titles(session.catalogue, q[:200], limit=20))

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
