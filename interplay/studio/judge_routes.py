"""A judge's pages of the studio: ``/judge/<token>`` (the judge's pairs), one pair to judge and
its form, and the results once the operator closes the study.

A judge link reaches only that judge's pairs: an unknown token is 403, a browser bound to another
judge's link 403 (the operator's browser excepted), a pair id not of this judge 400, a form
without this judge's CSRF token 403. Registered by :func:`interplay.studio.app.create_app`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from interplay.studio.access import CSRF_FIELD
from interplay.studio.state import Denied, StudioContext
from interplay.studio.study import CRITERIA, Study, SubmissionError

__all__ = ["register_judge_routes"]


def register_judge_routes(app: FastAPI, ctx: StudioContext) -> None:
    """Add the judge's routes (``/judge/...``) to ``app``."""
    state, access, page, error, need_csrf = ctx.state, ctx.access, ctx.page, ctx.error, ctx.need_csrf

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
