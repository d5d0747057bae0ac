"""The talk pages of the studio (the operator's): ``/talk`` starts a session in which a person
plays one role against an agent the operator allowed (``--talk-agent``), ``/talk/<sid>`` shows it
and takes the person's turns, ``/talk/<sid>/titles`` looks titles up for the turn form.

Nothing a request names reaches a backend: the agent must be one the operator offers and the data
one the studio serves (else 400); a turn over :data:`MAX_TURN_CHARS` is 413. Registered by
:func:`interplay.studio.app.create_app`; the session itself is :mod:`interplay.studio.talk`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from interplay.protocol import Role
from interplay.studio.state import StudioContext
from interplay.studio.talk import TalkSession, TurnRejected, talk_run_dir
from interplay.studio.title_search import search_titles

#: the longest turn a person may write in the talk page
MAX_TURN_CHARS = 2000
__all__ = ["MAX_TURN_CHARS", "register_talk_routes"]


def register_talk_routes(app: FastAPI, ctx: StudioContext) -> None:
    """Add the talk routes (``/talk...``, all the operator's) to ``app``."""
    state, access, page, error, need_csrf = ctx.state, ctx.access, ctx.page, ctx.error, ctx.need_csrf
    admin_only = ctx.admin_only

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
