"""The steppable episode core: one episode as a state machine that anything can drive.

:class:`RecommendationEnv` runs it to the end between two agents; a person in a browser, an RL
trainer or a test drives it turn by turn, in the spirit of PettingZoo's AEC API::

    core = EpisodeCore(EnvConfig(max_turns=10))
    views = core.reset("ep1", spec, seed=7)          # {Role.USER: UserView, Role.RECOMMENDER: ...}
    while not core.done:
        obs = core.observation()                     # for core.next_role; carries the allowed actions
        result = core.step(agent_of[core.next_role].act(obs))   # a Turn, or the exception it raised
    log = core.log()                                 # (core.play(agent_of) is this loop, exceptions caught)

Each step ends in one of three ways, kept apart: *terminated* (the user accepted), *truncated*
(the turn cap) or *failed* (a :class:`FailureKind`: the agent broke the protocol after its
retries, the agent raised, or the infrastructure under it failed: a dead actor, a server down).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from interplay.catalogue import Catalogue
from interplay.episode import (
    EpisodeSpec,
    HistoryTurn,
    Observation,
    RecommenderView,
    UserView,
    build_recommender_view,
    build_user_view,
)
from interplay.candidates import CandidateRetriever, strip_candidates
from interplay.episode_log import EpisodeLog, FailedAttempt, FailureKind, Termination, TurnLog
from interplay.grounding import strip_grounding, turn_facts
from interplay.protocol import (
    TITLE_REQUIRED,
    Action,
    ProtocolError,
    ProtocolErrorKind,
    Role,
    Turn,
    check_turn,
    legal_actions,
)

#: exception classes (by name, anywhere in the MRO, so a Ray task error wrapping one counts too)
#: that mean the machinery under an agent failed, not the agent: the episode is worth re-running
INFRASTRUCTURE_ERRORS = frozenset({
    "ConnectionError", "TimeoutError",  # builtins (ConnectionRefusedError, ... inherit)
    "RayActorError", "ActorDiedError", "ActorUnavailableError", "ActorUnschedulableError",
    "WorkerCrashedError", "NodeDiedError", "RaySystemError", "ObjectLostError", "OwnerDiedError",
    "LocalRayletDiedError", "GetTimeoutError", "OutOfMemoryError",
    "APIConnectionError", "APITimeoutError", "InternalServerError",  # an OpenAI-compatible server
    "AgentLostError",  # interplay.runtime.agent_host: the host restarted, the episode's agent is gone
})


def failure_kind(exc: BaseException) -> FailureKind:
    """Whether an exception raised while asking an agent for a turn is the agent's own failure
    (:attr:`FailureKind.AGENT`) or the infrastructure's (:attr:`FailureKind.INFRASTRUCTURE`)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # a Ray task error wraps its cause
        seen.add(id(current))
        if {cls.__name__ for cls in type(current).__mro__} & INFRASTRUCTURE_ERRORS:
            return FailureKind.INFRASTRUCTURE
        current = getattr(current, "cause", None) or current.__cause__
    # an exception Ray could not pickle (an openai error holding its HTTP request) arrives as
    # UnserializableException or a bare task error; its traceback text ends with "module.Class: message"
    last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    name = last.split(":", 1)[0].rsplit(".", 1)[-1].strip()
    if type(exc).__module__.startswith("ray.") and name in INFRASTRUCTURE_ERRORS:
        return FailureKind.INFRASTRUCTURE
    return FailureKind.AGENT


@dataclass
class EnvConfig:
    """Rules of an episode."""

    max_turns: int = 10
    first_speaker: Role = Role.USER
    max_retries: int = 2
    recommender_sees_persona: bool = False
    #: grounded observations: the user sees the catalogue facts of each item a recommender turn
    #: names (interplay.grounding); None: titles only
    grounding: Catalogue | None = None
    #: resolves the titles of logged turns to item ids (default: ``grounding``'s catalogue)
    catalogue: Catalogue | None = None
    #: recommender candidates: each recommender turn is shown the top ``candidates_k`` catalogue
    #: items retrieved from the conversation (interplay.candidates); None: none
    candidates: CandidateRetriever | None = None
    candidates_k: int = 0


@dataclass
class StepResult:
    """What one :meth:`EpisodeCore.step` did.

    ``turn`` is the logged turn when the step finished a turn (a valid turn, or the last failed
    attempt); ``None`` when the attempt was rejected and the same role is asked again (``retry``).
    """

    role: Role
    turn: TurnLog | None
    retry: bool = False
    terminated: bool = False
    truncated: bool = False
    failed: FailureKind | None = None

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated or self.failed is not None


@dataclass
class _TurnState:
    """The turn being played: its attempts so far and what the speaker was shown."""

    index: int
    role: Role
    started: float
    attempt: int = 0
    failed: list[FailedAttempt] = field(default_factory=list)
    candidates: list[str] | None = None  # retrieved once per turn (recommender runs with candidates)


class EpisodeCore:
    """One episode's rules and state, advanced one agent output at a time.

    The rules are those of :class:`~environments.recommendation_env.RecommendationEnv`: strict
    alternation from ``first_speaker``; every output checked against the protocol, a bad one
    retried up to ``max_retries`` times (same role, ``attempt + 1``) and then a ``protocol``
    failure; the user's ``accept`` terminates; ``max_turns`` turns truncate; an exception from an
    agent is a failure of its kind (:func:`failure_kind`), never raised.
    """

    def __init__(self, config: EnvConfig | None = None):
        self.config = config or EnvConfig()
        self._spec: EpisodeSpec | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self, episode_id: str, spec: EpisodeSpec, seed: int, user_spec: str = "",
              recommender_spec: str = "") -> dict[Role, UserView | RecommenderView]:
        """Start an episode; return each role's view. Raises
        :class:`~interplay.episode.TargetLeakError` when the user's view would leak the target
        (the episode is then failed and its log can still be read)."""
        self._spec, self.episode_id, self.seed = spec, episode_id, seed
        self.user_spec, self.recommender_spec = user_spec, recommender_spec
        self._started = time.perf_counter()
        self.turns: list[TurnLog] = []
        self.history: list[HistoryTurn] = []
        self.recommended: list[str] = []
        self.accepted: str | None = None
        self.accepted_id: str | None = None
        self.termination: Termination | None = None
        self.failure: FailureKind | None = None
        self.failed_role: Role | None = None
        self.error: str | None = None
        self._turn: _TurnState | None = None
        self._wall: float | None = None
        if self.config.max_turns <= 0:
            self._finish(Termination.MAX_TURNS)
        try:
            views = {Role.USER: build_user_view(episode_id, spec)}
        except Exception as exc:
            self.fail(exc)
            raise
        views[Role.RECOMMENDER] = build_recommender_view(episode_id, spec,
                                                         with_persona=self.config.recommender_sees_persona)
        self._begin_turn()
        return views

    @property
    def done(self) -> bool:
        return self.termination is not None

    @property
    def next_role(self) -> Role | None:
        """The role whose output :meth:`step` expects next; ``None`` once the episode is over.
        Reading it changes nothing."""
        if self.done:
            return None
        return self._current().role

    def legal_actions(self) -> frozenset[Action]:
        """The actions ``next_role`` may take now."""
        return legal_actions(self._current().role, bool(self.recommended))

    def _current(self) -> _TurnState:
        if self._spec is None:
            raise RuntimeError("call reset() before stepping an episode")
        if self._turn is None:
            raise RuntimeError(f"episode {self.episode_id} is over ({self.termination.value})")
        return self._turn

    def _begin_turn(self) -> None:
        """The next turn's state, created when the previous one ends (not when someone looks)."""
        if self.done:
            return
        index = len(self.turns)
        role = self.config.first_speaker if index % 2 == 0 else self.config.first_speaker.other
        self._turn = _TurnState(index=index, role=role, started=time.perf_counter())

    def observation(self) -> Observation:
        """What ``next_role`` is shown for its current attempt: the history as that role may see
        it (grounding facts for the user only, candidates for the recommender only), the attempt,
        the turns left and the allowed actions. The same on every call within an attempt: the
        turn's candidates are retrieved at the first call and kept for the turn (what the turn's
        log says it was shown)."""
        if self.done:
            raise RuntimeError(f"episode {self.episode_id} is over ({self.termination.value})")
        cur, cfg = self._current(), self.config
        if cur.role is Role.USER:
            seen, shown = strip_candidates(self.history), []
        else:
            seen = strip_grounding(self.history)
            if cur.candidates is None:  # a memo of a pure function of the history
                cur.candidates = (cfg.candidates.retrieve(self.history, cfg.candidates_k)
                                  if cfg.candidates is not None and cfg.candidates_k > 0 else [])
            shown = cur.candidates
        return Observation(history=seen, turn_index=cur.index, attempt=cur.attempt,
                           turns_left=cfg.max_turns - cur.index - 1, candidates=shown,
                           allowed_actions=self.legal_actions())

    def check(self, turn: Turn) -> ProtocolError | None:
        """Dry run of :meth:`step` for a turn of ``next_role``: the protocol error it would be
        retried or failed for, or None when it would be accepted. Changes nothing (the studio
        checks a person's turn with it before stepping)."""
        try:
            self._validate(turn, self._current().role)
        except ProtocolError as exc:
            return exc
        return None

    def play(self, agents: dict) -> EpisodeLog:
        """Run the episode to its end between in-process agents (``agents[role].act(observation)``),
        synchronously: an exception from ``act`` is stepped in as that agent's output (a
        ProtocolError is retried; anything else fails the episode). Returns the log."""
        while not self.done:
            role = self.next_role
            try:
                out: Turn | BaseException = agents[role].act(self.observation())
            except Exception as exc:  # noqa: BLE001 - an agent's failure is the episode's, never the caller's
                out = exc
            self.step(out)
        return self.log()

    def step(self, output: Turn | BaseException) -> StepResult:
        """Advance with ``next_role``'s output: its turn, or the exception its ``act`` raised."""
        result = self._step(output)
        if self._turn is None:
            self._begin_turn()
        return result

    def _step(self, output: Turn | BaseException) -> StepResult:
        if self.done:
            raise RuntimeError(f"episode {self.episode_id} is over ({self.termination.value})")
        cur = self._current()
        if isinstance(output, BaseException) and not isinstance(output, ProtocolError):
            log = TurnLog(index=cur.index, role=cur.role, action=None, text=None, parse_error=None,
                          latency_s=time.perf_counter() - cur.started, failed_attempts=cur.failed)
            self._end_turn(log)
            kind = failure_kind(output)
            self._finish(Termination.AGENT_ERROR, kind, describe_exception(output), cur.role)
            return StepResult(role=cur.role, turn=log, failed=kind)
        try:
            if isinstance(output, ProtocolError):
                raise output
            if not isinstance(output, Turn):
                raise ProtocolError(ProtocolErrorKind.EMPTY, f"agent returned {type(output).__name__}, not a Turn", None)
            turn = self._validate(output, cur.role)
        except ProtocolError as exc:
            cur.failed.append(FailedAttempt(raw=exc.raw, error=str(exc)))
            if cur.attempt < self.config.max_retries:
                cur.attempt += 1
                return StepResult(role=cur.role, turn=None, retry=True)
            last = cur.failed.pop()
            log = TurnLog(index=cur.index, role=cur.role, action=None, text=None, raw=last.raw,
                          parse_error=last.error, latency_s=time.perf_counter() - cur.started,
                          failed_attempts=cur.failed)
            self._end_turn(log)
            self._finish(Termination.PROTOCOL_ERROR, FailureKind.PROTOCOL, last.error, cur.role)
            return StepResult(role=cur.role, turn=log, failed=FailureKind.PROTOCOL)
        return self._accept_turn(cur, turn)

    def fail(self, exc: BaseException, role: Role | None = None) -> None:
        """End the episode outside a turn (``role``'s agent ``reset`` raised; the view would leak:
        no role)."""
        if not self.done:
            self._finish(Termination.AGENT_ERROR, failure_kind(exc), describe_exception(exc), role)

    def log(self) -> EpisodeLog:
        """The episode as logged (also while it runs: ``termination`` is then ``max_turns`` so far)."""
        spec = self._spec
        if spec is None:
            raise RuntimeError("call reset() before reading an episode's log")
        wall = self._wall if self._wall is not None else time.perf_counter() - self._started
        return EpisodeLog(
            episode_id=self.episode_id, record_id=spec.record_id, source=spec.source, seed=self.seed,
            user_spec=self.user_spec, recommender_spec=self.recommender_spec, persona=spec.persona,
            target=spec.target, turns=list(self.turns), termination=self.termination or Termination.MAX_TURNS,
            failure=self.failure, failed_role=self.failed_role, num_turns=len(self.turns), accepted_item=self.accepted,
            accepted_item_id=self.accepted_id,
            recommended_items=list(self.recommended), error=self.error, wall_s=round(wall, 4),
        )

    # -- internals ---------------------------------------------------------------------------

    def _validate(self, turn: Turn, role: Role) -> Turn:
        checked = check_turn(turn, role)
        if checked.action in TITLE_REQUIRED and not checked.titles:
            raise ProtocolError(ProtocolErrorKind.MISSING_RESPONSE,
                                f"{checked.action.value} without a <movie_title>", turn.raw)
        if checked.action not in legal_actions(role, bool(self.recommended)):
            raise ProtocolError(ProtocolErrorKind.ROLE_ACTION,
                                f"{checked.action.value} before any recommendation", turn.raw)
        return Turn(checked.action, checked.text, raw=turn.raw, meta=turn.meta)

    def _accept_turn(self, cur: _TurnState, turn: Turn) -> StepResult:
        cfg, role = self.config, cur.role
        shown = cur.candidates or []
        said = HistoryTurn(role=role, action=turn.action, text=turn.text, candidates=shown)
        meta = dict(turn.meta)
        if shown:
            meta["candidates"] = shown
        if cfg.grounding is not None and role is Role.RECOMMENDER:
            said.about = turn_facts(said, cfg.grounding, self._spec.target, resolve=self._item)
            if said.about:  # what the user was shown, in the log
                meta["about"] = [f.model_dump() for f in said.about]
        log = TurnLog(index=cur.index, role=role, action=turn.action, text=turn.text, titles=turn.titles,
                      item_ids=[self._item_id(t) for t in turn.titles], raw=turn.raw, latency_s=time.perf_counter() - cur.started, failed_attempts=cur.failed,
                      meta=meta)
        self._end_turn(log)
        self.history.append(said)
        if turn.action is Action.RECOMMEND:
            self.recommended.extend(t for t in turn.titles if t not in self.recommended)
        if turn.action is Action.ACCEPT:
            self.accepted = accepted_title(turn, self.history, self._item_id)
            self.accepted_id = self._item_id(self.accepted) if self.accepted else None
            self._finish(Termination.ACCEPTED)
            return StepResult(role=role, turn=log, terminated=True)
        if len(self.turns) >= cfg.max_turns:
            self._finish(Termination.MAX_TURNS)
            return StepResult(role=role, turn=log, truncated=True)
        return StepResult(role=role, turn=log)

    def _item_id(self, title: str) -> str | None:
        """The item a title names: the spec's own resolution of it, else the run's catalogue's."""
        known = self._spec.item_ids.get(title) if self._spec is not None else None
        if known is not None:
            return known
        catalogue = self.config.catalogue or self.config.grounding
        item = catalogue.resolve(title) if catalogue is not None else None
        return item.item_id if item is not None else None

    def _item(self, title: str):
        """The catalogue item a title names, by :meth:`_item_id` (None: not a catalogue item)."""
        catalogue = self.config.catalogue or self.config.grounding
        item_id = self._item_id(title)
        return catalogue.get(item_id) if catalogue is not None else None

    def _end_turn(self, log: TurnLog) -> None:
        self.turns.append(log)
        self._turn = None

    def _finish(self, termination: Termination, failure: FailureKind | None = None, error: str | None = None,
                role: Role | None = None) -> None:
        self.termination, self.failure, self.error = termination, failure, error
        self.failed_role = role if failure is not None else None
        self._turn = None
        self._wall = time.perf_counter() - self._started


def accepted_title(turn: Turn, history: list[HistoryTurn],
                   item_id: Callable[[str], str | None] = lambda title: None) -> str | None:
    """The item accepted: the first title named in the accept turn that names an item recommended
    in the episode (the same catalogue item by ``item_id``, however spelled; a title outside the
    catalogue by its text), else the last title recommended. A title the accepting user names that
    was never recommended is not what it accepted: only what is on the table can be."""
    recommended = [t for past in history if past.role is Role.RECOMMENDER and past.action is Action.RECOMMEND
                   for t in past.titles]
    on_table = {item_id(t) or t for t in recommended}
    named = next((t for t in turn.titles if (item_id(t) or t) in on_table), None)
    return named if named is not None else (recommended[-1] if recommended else None)


def describe_exception(exc: BaseException) -> str:
    """One exception as logged: its type and message, at most 2,000 characters."""
    tb = traceback.format_exception_only(type(exc), exc)
    return "".join(tb).strip()[-2000:]
