"""What the studio serves (:class:`StudioState`) and what its route modules share with
:func:`interplay.studio.app.create_app` (:class:`StudioContext`, :class:`Denied`).

Its own module so that ``app.py``, ``judge_routes.py`` and ``talk_routes.py`` all import it
and none of them imports another round a cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, params
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from interplay.agent_specs import AgentSpec
from interplay.catalogue import Catalogue
from interplay.studio.access import Access
from interplay.studio.agent_factory import AgentFactory
from interplay.studio.blinding import load_catalogue
from interplay.studio.exports import ExportCache
from interplay.studio.runs_index import RunsIndex
from interplay.studio.study import Study
from interplay.studio.talk import TalkRegistry

#: what the talk page offers when the operator names no agent (``--talk-agent``): the project's own
#: agents on its default model; never a URL or a model id a request names
DEFAULT_TALK_AGENTS = ("rule", "llm", "zero-shot")
__all__ = ["DEFAULT_TALK_AGENTS", "Denied", "StudioContext", "StudioState"]


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


@dataclass(frozen=True)
class StudioContext:
    """What a route module needs from ``create_app``: the state, the access checks, the templates
    and the page helpers (``page`` renders a template, ``error`` an error page; ``need_admin`` and
    ``need_csrf`` raise :class:`Denied`; ``admin_only`` is the operator-only route dependency)."""

    state: StudioState
    access: Access
    templates: Jinja2Templates
    page: Callable[..., HTMLResponse]
    error: Callable[[Request, int, str], HTMLResponse]
    need_admin: Callable[[Request], None]
    need_csrf: Callable[[Request, Any, str], None]
    admin_only: Sequence[params.Depends]
