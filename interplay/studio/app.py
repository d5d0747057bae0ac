"""The studio's web app (FastAPI + Jinja templates, a little plain JavaScript, no front-end build).

Three parts, one server:

- **Runs**: the run and evaluation folders it serves (:mod:`interplay.studio.runs_index`), each
  with its summary, plots and a filterable episode list; a transcript per episode.
- **Studies**: head-to-head human studies (:mod:`interplay.studio.study`): judges open
  ``/judge/<token>``; ``/studies/<id>`` shows the results and exports them.
- **Talk**: a person plays one role against any agent spec (:mod:`interplay.studio.talk`); the
  finished episode is logged like any run and appears in the run list.

Every request is validated: an unknown judge token is 403, a tampered pair id or side 400, a body
or text over the limits 413; model text is always escaped.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from interplay.catalogue import Catalogue
from interplay.protocol import Role
from interplay.studio.agent_factory import AgentFactory
from interplay.studio.rendering import item_href, render_turn_text
from interplay.studio.runs_index import RunsIndex, episode_row, filter_episodes
from interplay.studio.study import (
    CRITERIA,
    BadSubmission,
    Study,
    TooLarge,
    UnknownJudge,
)
from interplay.studio.study_stats import write_results
from interplay.studio.talk import TalkRegistry, TalkSession, TurnRejected, talk_run_dir
from interplay.studio.title_search import search_titles

HERE = Path(__file__).parent
#: the largest request body accepted (a judgement or a turn is a few KiB)
MAX_BODY_BYTES = 64 * 1024
#: the longest turn a person may write in the talk page
MAX_TURN_CHARS = 2000
EXPORTS = ("results.json", "results.csv", "judgements.csv", "results.png")


class StudioState:
    """What the app serves: the runs index, the studies by id, the data sets a person may talk
    on, and the live talk sessions."""

    def __init__(self, runs: list[Path], studies: list[Path], data: list[str], talk_out: Path,
                 agents: AgentFactory | None = None):
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
        self.agents = agents or AgentFactory()
        self.talks = TalkRegistry()
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
                self._catalogues[data] = _load_catalogue(data)
            return self._catalogues[data]


def _load_catalogue(data: str) -> Catalogue | None:
    from interplay.data.build import read_catalogue
    from interplay.simulation_data import DEMO, load_demo

    try:
        return load_demo().catalogue if data == DEMO else read_catalogue(data)
    except (OSError, ValueError):
        return None


def create_app(runs: list[str | Path] = (), studies: list[str | Path] = (), data: list[str] = ("demo",),
               talk_out: str | Path = "runs/talk", agents: AgentFactory | None = None) -> FastAPI:
    """The studio app serving ``runs`` (folders holding runs, searched a few levels down),
    ``studies`` (study files of ``interplay study create``) and talk sessions on ``data``, whose
    episodes are logged under ``talk_out``."""
    state = StudioState([Path(r) for r in runs], [Path(s) for s in studies], list(data), Path(talk_out), agents)
    app = FastAPI(title="Interplay Studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = state
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["turn_html"] = render_turn_text
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def error(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "error.html", status=status, status_code=status, message=message)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return Response(f"request body over {MAX_BODY_BYTES} bytes", status_code=413, media_type="text/plain")
        if request.method == "POST" and length is None:  # a chunked body: read it under the cap
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return Response(f"request body over {MAX_BODY_BYTES} bytes", status_code=413,
                                    media_type="text/plain")
            request._body = body  # starlette re-reads it from here
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
        return response

    # -- runs ---------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request):
        entries = sorted(state.runs.refresh(), key=lambda e: e.run_id)
        return page(request, "runs.html", entries=entries, studies=sorted(state.studies))

    @app.get("/runs/{run_id:path}/episodes/{episode_id}", response_class=HTMLResponse)
    def episode_page(request: Request, run_id: str, episode_id: str, raw: bool = False):
        entry = state.runs.get(run_id)
        if entry is None:
            return error(request, 404, "no such run")
        episode = next((e for e in entry.episodes() if e.episode_id == episode_id), None)
        if episode is None:
            return error(request, 404, "no such episode in this run")
        href = item_href(f"/runs/{quote(run_id)}")
        return page(request, "episode.html", entry=entry, ep=episode, raw=raw, href=href)

    @app.get("/runs/{run_id:path}/item", response_class=HTMLResponse)
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

    @app.get("/runs/{run_id:path}/files/{name}")
    def run_file(request: Request, run_id: str, name: str):
        entry = state.runs.get(run_id)
        path = entry.file(name) if entry is not None else None
        if path is None:
            return error(request, 404, "no such file in this run")
        return FileResponse(path)

    @app.get("/runs/{run_id:path}", response_class=HTMLResponse)
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

    # -- studies ------------------------------------------------------------------------------

    @app.get("/studies/{sid}", response_class=HTMLResponse)
    def study_page(request: Request, sid: str):
        study = state.study(sid)
        if study is None:
            return error(request, 404, "no such study")
        return page(request, "study.html", sid=sid, study=study, results=study.results(),
                    progress=study.progress(), judges=study.judges(), criteria=CRITERIA, exports=EXPORTS)

    @app.get("/studies/{sid}/export/{name}")
    def study_export(request: Request, sid: str, name: str):
        study = state.study(sid)
        if study is None or name not in EXPORTS:
            return error(request, 404, "no such study export")
        folder = Path(tempfile.mkdtemp(prefix="interplay-study-"))
        write_results(study, folder)
        return FileResponse(folder / name, filename=f"{sid}-{name}")

    @app.get("/judge/{token}", response_class=HTMLResponse)
    def judge_home(request: Request, token: str):
        found = state.judge_study(token)
        if found is None:
            return error(request, 403, "unknown judge link")
        sid, study = found
        pairs = study.pairs_for(token)
        nxt = next((p for p in pairs if not p.done), None)
        return page(request, "judge.html", token=token, study=study, judge=study.judge(token), pairs=pairs,
                    next_pair=nxt, criteria=CRITERIA)

    @app.get("/judge/{token}/pair/{pair_id}", response_class=HTMLResponse)
    def judge_pair(request: Request, token: str, pair_id: str):
        found = state.judge_study(token)
        if found is None:
            return error(request, 403, "unknown judge link")
        _, study = found
        pairs = study.pairs_for(token)
        pair = next((p for p in pairs if p.pair_id == pair_id), None)
        if pair is None:
            return error(request, 400, "no such pair for this judge")
        return page(request, "judge_pair.html", token=token, study=study, pair=pair, total=len(pairs),
                    done=sum(p.done for p in pairs), criteria=CRITERIA)

    @app.post("/judge/{token}/pair/{pair_id}")
    async def judge_submit(request: Request, token: str, pair_id: str):
        form = await request.form()
        choices = {c.key: str(form.get(c.key, "")) for c in CRITERIA}
        extra = [k for k in form.keys() if k not in choices and k != "comment"]
        found = state.judge_study(token)
        if found is None:
            return error(request, 403, "unknown judge link")
        if extra:
            return error(request, 400, f"unknown field(s): {', '.join(sorted(extra))}")
        _, study = found
        try:
            study.submit(token, pair_id, choices, str(form.get("comment", "")))
        except UnknownJudge:
            return error(request, 403, "unknown judge link")
        except TooLarge as exc:
            return error(request, 413, str(exc))
        except BadSubmission as exc:
            return error(request, 400, str(exc))
        nxt = study.next_unjudged(token)
        target = f"/judge/{token}/pair/{nxt}" if nxt else f"/judge/{token}"
        return RedirectResponse(target, status_code=303)

    # -- talk ---------------------------------------------------------------------------------

    @app.get("/talk", response_class=HTMLResponse)
    def talk_new(request: Request):
        return page(request, "talk_new.html", data=state.data, message=None, form={})

    @app.post("/talk")
    async def talk_start(request: Request):
        form = await request.form()
        values = {k: str(form.get(k, "")).strip() for k in ("role", "agent", "data", "record_id", "max_turns")}
        try:
            role = Role(values["role"] or "user")
            if values["data"] and values["data"] not in state.data:
                raise ValueError(f"data {values['data']!r} is not served here; choose one of {', '.join(state.data)}")
            max_turns = int(values["max_turns"] or 10)
            if not 2 <= max_turns <= 40:
                raise ValueError("max turns must be between 2 and 40")
            agent, data = values["agent"] or "rule", values["data"] or state.data[0]
            folder = talk_run_dir(state.talk_out, role, agent, data=data, max_turns=max_turns)
            session = TalkSession.start(folder, role, agent, data=data, record_id=values["record_id"] or None,
                                        max_turns=max_turns, agents=state.agents)
        except ValueError as exc:
            return page(request, "talk_new.html", status=400, data=state.data, message=str(exc), form=values)
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
                    max_chars=MAX_TURN_CHARS)

    @app.get("/talk/{sid}", response_class=HTMLResponse)
    def talk_page(request: Request, sid: str):
        session = state.talks.get(sid)
        if session is None:
            return error(request, 404, "no such talk session (it may have ended long ago)")
        return talk_view(request, sid, session)

    @app.post("/talk/{sid}/say", response_class=HTMLResponse)
    async def talk_say(request: Request, sid: str):
        session = state.talks.get(sid)
        if session is None:
            return error(request, 404, "no such talk session")
        form = await request.form()
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

    @app.get("/talk/{sid}/titles")
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
