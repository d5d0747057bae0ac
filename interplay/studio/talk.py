"""Talk to a simulator: a person plays one role of an episode, an agent the other.

The engine behind Interplay Studio's "talk" page (the web layer calls it from worker threads)::

    session = TalkSession.start("runs/talk", Role.USER, "usersim:ckpt/user", data="demo")
    session.view()                                  # persona, target attributes, history, allowed actions
    session.say("disclose-goal", "Something with a heist, please.")
    session.say("accept", "Great, I'll watch it.")  # the episode ends: logged in runs/talk/episodes.jsonl

The rules are those of every simulated episode: the steppable
:class:`~environments.episode_core.EpisodeCore` checks each turn, retries the agent's malformed
outputs, ends the episode on ``accept``, at the turn cap or on a failure. The agent runs in this
process (no Ray); agents that need a model share one backend per (backend, model) through an
:class:`AgentFactory`. A finished episode is appended to ``RUN_DIR/episodes.jsonl`` in the episode
log schema (the person's side is the spec ``human``), with ``config.json`` (``kind: talk``) and an
updated ``summary.json``, so the run list, ``interplay show`` and the metrics read it like any run.

Why this module is long: :class:`TalkSession` is one state machine (start, the person's turn
checked, the agent's replies, the view, the log) whose steps share one lock; the shared models
(:mod:`~interplay.studio.agent_factory`), the title search (:mod:`~interplay.studio.title_search`)
and the run folders (:mod:`~interplay.studio.talk_runs`) live in their own modules.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from environments.episode_core import EpisodeCore
from interplay.runtime.env_settings import env_config
from interplay.agent import Agent
from interplay.agent_specs import (
    AgentSpec,
    check_agent_spec,
    model_of,
)
from interplay.catalogue import Catalogue, split_year
from interplay.episode_log import (
    EpisodeLog,
)
from interplay.protocol import (
    TITLE_CLOSE,
    TITLE_OPEN,
    Action,
    ProtocolErrorKind,
    Role,
    Turn,
    mark_title,
)
from interplay.simulation_data import SimulationData
from interplay.studio.agent_factory import AgentFactory
from interplay.studio.talk_runs import append_episode, claim_folder, talk_run_dir
from interplay.studio.title_search import search_titles

__all__ = ["HUMAN_SPEC", "AgentFactory", "SessionNotFound", "TalkRegistry", "TalkSession", "TurnRejected",
           "compose_text", "search_titles", "talk_run_dir"]

#: the spec logged for the person's side of a talk episode (``user_spec`` or ``recommender_spec``)
HUMAN_SPEC = "human"
_ACTION_ORDER = list(Action)
_ACTIVITY = itertools.count()


class TurnRejected(ValueError):
    """The person's turn breaks the rules (the environment's reason is the message); the episode
    goes on and the person may try again."""


class SessionNotFound(LookupError):
    """No live talk session has this id (never started, or dropped from the registry)."""


# -- composing the person's turn -------------------------------------------------------------------

_MARKED = re.compile(re.escape(TITLE_OPEN) + r".*?" + re.escape(TITLE_CLOSE), re.S)


def compose_text(text: str, titles: Sequence[str]) -> str:
    """``text`` with each title marked ``<movie_title>Title</movie_title>``: in place where the
    text already names it (the full title, or its name with or without its year, any case, outside
    earlier marks), else appended at the end."""
    text = text.strip()
    appended: list[str] = []
    for title in titles:
        mark = mark_title(title)
        if mark in text:
            continue
        name, year = split_year(title)
        pattern = re.compile(r"(?<!\w)" + re.escape(name) + (rf"(?:\s*\({year}\))?" if year else "") + r"(?!\w)",
                             re.IGNORECASE)
        marked = [m.span() for m in _MARKED.finditer(text)]
        hit = next((m for m in pattern.finditer(text)
                    if not any(s < m.end() and m.start() < e for s, e in marked)), None) if name else None
        if hit is None:
            appended.append(mark)
        else:
            text = text[:hit.start()] + mark + text[hit.end():]
    if appended:
        text = (text + " " if text else "") + ", ".join(appended)
    return text


# -- the session -----------------------------------------------------------------------------------

class TalkSession:
    """One episode between a person (``human_role``) and an agent; start it with :meth:`start`.

    Rejected turns. A person's turn is checked before it reaches the episode core, by the rules the
    core applies to every output (:func:`~interplay.protocol.check_turn`, a title for
    ``recommend``, :meth:`~environments.episode_core.EpisodeCore.legal_actions`), and a turn that
    fails raises :class:`TurnRejected` without stepping the core. So a person's mistake never
    consumes one of the retries after which the core ends an episode as a ``protocol`` failure,
    and the core keeps the run's standard ``max_retries`` for the agent (a larger limit would have
    changed the agent's rules too: the core has one config for both sides). The person's logged
    turns therefore carry no failed attempts; they carry ``meta["human"] = True``.

    Methods are serialised per session (a lock), so a web server may call them from any thread.
    """

    def __init__(self, *, run_dir: Path, human_role: Role, agent_spec: AgentSpec, agent: Agent,
                 core: EpisodeCore, data: SimulationData, config: dict):
        self.session_id = secrets.token_urlsafe(16)
        self.run_dir = run_dir
        self.human_role = human_role
        self.agent_role = human_role.other
        self.agent_spec = agent_spec
        self.agent = agent
        self.core = core
        self.data = data
        self.config = config
        self.created = time.time()
        self.last_active = next(_ACTIVITY)  # order of the person's last start/say across sessions
        self.created_order = self.last_active
        self.logged = False
        self._lock = threading.RLock()
        self._view: dict | None = None  # what the person was shown at reset (the core's UserView)
        self._watched: set[str] = set()  # the persona's watched titles, which a person-user may name

    @property
    def catalogue(self) -> Catalogue:
        return self.data.catalogue

    @classmethod
    def start(cls, run_dir: str | Path, human_role: Role | str, agent_spec: str, data: str = "demo",
              record_id: str | None = None, max_turns: int = 10, seed: int = 0,
              agents: AgentFactory | None = None, *, split: str = "test", grounded: bool = True) -> "TalkSession":
        """Start an episode of ``data``'s spec ``record_id`` (default: the ``seed``-th, cycling:
        the first for seed 0) with the person in ``human_role`` and ``agent_spec`` in the other
        role, and play the agent's turns until the person's turn. ``grounded``: the user (person
        or agent) sees the catalogue facts of each recommended item, as in a simulation's default.
        ValueError (one line) for a bad role, spec, data source, record id or run folder."""
        try:
            human_role = Role(human_role)
        except ValueError:
            raise ValueError(f"human role must be 'user' or 'recommender', got {human_role!r}") from None
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        agent_role = human_role.other
        spec = check_agent_spec(agent_spec, agent_role)  # ValueError of one line
        factory = agents or AgentFactory.shared()
        sim = factory.data(data, split)
        if not sim.episodes:
            raise ValueError(f"data {data!r} has no episodes")
        if record_id is None:
            episode_spec = sim.episodes[seed % len(sim.episodes)]
        else:
            episode_spec = next((e for e in sim.episodes if e.record_id == record_id), None)
            if episode_spec is None:
                shown = ", ".join(e.record_id for e in sim.episodes[:5])
                more = ", ..." if len(sim.episodes) > 5 else ""
                raise ValueError(f"unknown record id {record_id!r} in {sim.name} (it has {shown}{more})")
        env = env_config(max_turns=max_turns, first_speaker=Role.USER,
                         recommender=spec if agent_role is Role.RECOMMENDER else None,
                         catalogue=sim.catalogue, grounded=grounded)
        config = {"kind": "talk", "human_role": human_role.value, "agent": str(spec),
                  "user": HUMAN_SPEC if human_role is Role.USER else str(spec),
                  "recommender": HUMAN_SPEC if human_role is Role.RECOMMENDER else str(spec),
                  "data": data, "split": split, "max_turns": max_turns, "first_speaker": env.first_speaker.value,
                  "max_retries": env.max_retries, "grounded": grounded,
                  "generation": factory.params.model_dump(mode="json") if model_of(spec) else None}
        agent = factory.build(spec, agent_role, sim.catalogue, seed)
        run_dir = Path(run_dir)
        claim_folder(run_dir, config)
        core = EpisodeCore(env)
        episode_id = f"talk-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        users = {Role.USER: config["user"], Role.RECOMMENDER: config["recommender"]}
        try:
            views = core.reset(episode_id, episode_spec, seed, users[Role.USER], users[Role.RECOMMENDER])
            agent.reset(views[agent_role])
        except Exception as exc:  # noqa: BLE001 - a spec that leaks its target, an agent that cannot start
            msg = " ".join(str(exc).split())
            raise ValueError(f"cannot start the episode of {episode_spec.record_id!r} with {str(spec)!r}: "
                             f"{type(exc).__name__}: {msg}") from None
        session = cls(run_dir=run_dir, human_role=human_role, agent_spec=spec, agent=agent, core=core,
                      data=sim, config=config)
        if human_role is Role.USER:
            session._view = views[Role.USER].model_dump(mode="json")
            session._watched = {w.title for w in views[Role.USER].persona.watched}
        with session._lock:
            session._play_agent()
        return session

    # -- the person's side -----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.core.done

    @property
    def your_turn(self) -> bool:
        """Whether the episode waits for the person."""
        return not self.core.done and self.core.next_role is self.human_role

    def view(self) -> dict:
        """What the person may see, JSON-ready:

        ``session_id``, ``episode_id``, ``role`` (the person's), ``agent`` (spec) and
        ``agent_role``; ``persona``, ``target_attributes`` and ``target_attribute_text`` when the
        person is the user (never the target's title or item id), None when the recommender;
        ``history``: turns as ``{index, role, action, text (titles marked), plain_text, titles,
        about (the user's grounding facts, [] for a recommender), by_person, retries}``;
        ``your_turn``, ``allowed_actions`` (action values, empty unless it is the person's turn);
        ``recommended_items``; ``done``, ``termination``, ``outcome``, ``failure``, ``error`` (None
        while running), ``accepted_item``; ``turns_taken``, ``max_turns``, ``turns_left``;
        ``logged`` (the episode is in the run folder)."""
        with self._lock:
            core = self.core
            is_user = self.human_role is Role.USER
            history = []
            for t in core.turns:
                titles = list(t.titles)
                history.append({
                    "index": t.index, "role": t.role.value, "action": t.action.value if t.action else None,
                    "text": t.text, "plain_text": (t.text or "").replace(TITLE_OPEN, "").replace(TITLE_CLOSE, ""),
                    "titles": titles, "about": list(t.meta.get("about", [])) if is_user else [],
                    "by_person": t.role is self.human_role, "retries": len(t.failed_attempts),
                })
            allowed = core.legal_actions() if self.your_turn else frozenset()
            log = core.log()
            user_view = self._view or {}
            return {
                "session_id": self.session_id,
                "episode_id": core.episode_id,
                "role": self.human_role.value,
                "agent": str(self.agent_spec),
                "agent_role": self.agent_role.value,
                "persona": user_view.get("persona") if is_user else None,
                "target_attributes": user_view.get("target_attributes") if is_user else None,
                "target_attribute_text": user_view.get("target_attribute_text") if is_user else None,
                "history": history,
                "your_turn": self.your_turn,
                "allowed_actions": [a.value for a in _ACTION_ORDER if a in allowed],
                "recommended_items": list(core.recommended),
                "done": core.done,
                "termination": core.termination.value if core.done else None,
                "outcome": log.outcome.value if core.done else None,
                "failure": core.failure.value if core.failure else None,
                "error": core.error,
                "accepted_item": core.accepted,
                "turns_taken": len(core.turns),
                "max_turns": core.config.max_turns,
                "turns_left": max(0, core.config.max_turns - len(core.turns)),
                "logged": self.logged,
            }

    def say(self, action: str, text: str, titles: Sequence[str] = ()) -> dict:
        """Play the person's turn: ``action`` (a value such as ``recommend``), ``text``, and
        ``titles`` chosen from the catalogue search, each marked in the text (in place where the
        text names it, else appended). Then the agent answers until it is the person's turn again
        or the episode ends (a finished episode is logged). Returns :meth:`view`.

        Raises :class:`TurnRejected` (nothing changes; try again) when the episode is over or not
        waiting for the person, the action is unknown or not allowed now (``accept`` before any
        recommendation, an action of the other role), ``recommend`` names no title, a title is
        neither a catalogue title nor one already in the conversation (nor, for the user, a
        persona's watched title), the turn is empty, or its text breaks the protocol."""
        with self._lock:
            self.last_active = next(_ACTIVITY)
            core = self.core
            if core.done:
                raise TurnRejected(f"the episode is over ({core.termination.value})")
            if core.next_role is not self.human_role:
                raise TurnRejected(f"it is the {core.next_role.value}'s turn, not yours")
            try:
                act = Action(action)
            except ValueError:
                raise TurnRejected(f"unknown action {action!r}; allowed now: {self._allowed_text()}") from None
            chosen = [self._resolve_title(t) for t in dict.fromkeys(t.strip() for t in titles if t.strip())]
            body = compose_text(text or "", chosen)
            if not body:
                raise TurnRejected("empty turn: write a message")
            turn = Turn(act, body, meta={"human": True})
            self._check(turn)
            result = core.step(turn)
            if result.retry:  # the checks above are the core's own: this means they drifted apart
                raise TurnRejected("the environment rejected the turn; try again")
            self._play_agent()
            return self.view()

    def search_titles(self, query: str, limit: int = 20) -> list[dict]:
        """:func:`search_titles` over this session's catalogue."""
        return search_titles(self.data.catalogue, query, limit)

    def log(self) -> EpisodeLog:
        """The episode as logged (so far, while it runs)."""
        with self._lock:
            return self.core.log()

    # -- internals -------------------------------------------------------------------------------

    def _allowed_text(self) -> str:
        allowed = self.core.legal_actions()
        return ", ".join(a.value for a in _ACTION_ORDER if a in allowed)

    def _check(self, turn: Turn) -> None:
        """The core's own check of a turn (:meth:`EpisodeCore.check`), refused as TurnRejected in
        words for a person."""
        error = self.core.check(turn)
        if error is None:
            return
        if error.kind is ProtocolErrorKind.ROLE_ACTION:
            why = "before any recommendation" if "before any recommendation" in str(error) else "now"
            raise TurnRejected(f"the {self.human_role.value} may not {turn.action.value} {why}; "
                               f"allowed now: {self._allowed_text()}")
        if error.kind is ProtocolErrorKind.MISSING_RESPONSE and "<movie_title>" in str(error):
            raise TurnRejected(f"{turn.action.value} without a <movie_title>: choose a title to recommend")
        raise TurnRejected(str(error))

    def _resolve_title(self, title: str) -> str:
        """The catalogue's spelling of a chosen title; a title already in the conversation or (for
        the user) one of the persona's watched items as given; else TurnRejected."""
        item = self.data.catalogue.resolve(title)
        if item is not None:
            return item.title
        said = {t for turn in self.core.turns for t in turn.titles}
        watched = self._watched if self.human_role is Role.USER else set()
        if title in said or title in watched:
            return title
        raise TurnRejected(f"{title!r} is not in the catalogue: choose a title from the search")

    def _play_agent(self) -> None:
        """The agent's turns until the person's turn or the end (as RecommendationEnv.run plays
        them); a finished episode is logged once."""
        core = self.core
        while not core.done and core.next_role is self.agent_role:
            obs = core.observation()
            try:
                out: Turn | BaseException = self.agent.act(obs)
            except Exception as exc:  # noqa: BLE001 - a ProtocolError is retried; anything else ends the episode
                out = exc
            core.step(out)
        if core.done and not self.logged:
            append_episode(self.run_dir, core.log(), self.data.left_out)
            self.logged = True


# -- the sessions a web app holds ------------------------------------------------------------------

class TalkRegistry:
    """Live talk sessions by id (thread-safe), at most ``max_sessions``: adding one more drops the
    oldest finished session first, else the one idle longest (an abandoned tab)."""

    def __init__(self, max_sessions: int = 32, agents: AgentFactory | None = None):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.agents = agents or AgentFactory.shared()
        self._sessions: dict[str, TalkSession] = {}
        self._lock = threading.Lock()

    def start(self, run_dir: str | Path, human_role: Role | str, agent_spec: str, **kwargs) -> TalkSession:
        """:meth:`TalkSession.start` with this registry's factory, then :meth:`add`."""
        kwargs.setdefault("agents", self.agents)
        session = TalkSession.start(run_dir, human_role, agent_spec, **kwargs)
        self.add(session)
        return session

    def add(self, session: TalkSession) -> str:
        """Hold ``session`` (dropping one if the registry is full); return its id."""
        with self._lock:
            while len(self._sessions) >= self.max_sessions:
                live = list(self._sessions.values())
                finished = [s for s in live if s.done]
                victim = (min(finished, key=lambda s: s.created_order) if finished
                          else min(live, key=lambda s: s.last_active))
                del self._sessions[victim.session_id]
            self._sessions[session.session_id] = session
            return session.session_id

    def get(self, session_id: str) -> TalkSession | None:
        """The session with this id, or None (never started, or dropped)."""
        with self._lock:
            return self._sessions.get(session_id)

    def __getitem__(self, session_id: str) -> TalkSession:
        """The session with this id; :class:`SessionNotFound` if there is none."""
        session = self.get(session_id)
        if session is None:
            raise SessionNotFound(f"no talk session {session_id!r} (it ended long ago or never existed)")
        return session

    def remove(self, session_id: str) -> None:
        """Forget a session (nothing happens if it is unknown)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._sessions
