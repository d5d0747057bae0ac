"""RecommendationEnv: one episode, strict alternation, protocol checks, termination.

The environment is transport-agnostic: it talks to each agent through an :class:`AgentHandle`
(``reset`` / ``act`` coroutines). :class:`LocalAgentHandle` wraps an in-process agent; the Ray
runtime supplies handles that call agents hosted in actors. The environment alone builds the
views, so the user agent never receives the target title or id.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass
from typing import Protocol

from interplay.agent import Agent
from interplay.candidates import CandidateRetriever, strip_candidates
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
from interplay.grounding import strip_grounding, turn_facts
from interplay.episode_log import EpisodeLog, FailedAttempt, Termination, TurnLog
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


class AgentHandle(Protocol):
    """How the environment reaches an agent, wherever it runs."""

    async def reset(self, view: UserView | RecommenderView) -> None: ...

    async def act(self, observation: Observation) -> Turn: ...


class LocalAgentHandle:
    """An agent in this process; ``act`` runs in a worker thread so episodes can overlap."""

    def __init__(self, agent: Agent):
        self.agent = agent

    async def reset(self, view: UserView | RecommenderView) -> None:
        self.agent.reset(view)

    async def act(self, observation: Observation) -> Turn:
        return await asyncio.to_thread(self.agent.act, observation)


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
    #: recommender candidates: each recommender turn is shown the top ``candidates_k`` catalogue
    #: items retrieved from the conversation (interplay.candidates); None: none
    candidates: CandidateRetriever | None = None
    candidates_k: int = 0


class RecommendationEnv:
    """Runs one episode between two agents and returns its :class:`EpisodeLog`.

    - speakers alternate strictly, starting with ``first_speaker``;
    - every turn is checked against the protocol (wire format, actions allowed for the role,
      ``accept`` only after a recommendation); a bad turn is retried up to ``max_retries`` times,
      then the episode ends with ``protocol_error``;
    - the user's ``accept`` ends it with ``accepted``; ``max_turns`` turns end it with ``max_turns``;
    - an exception inside an agent ends it with ``agent_error`` (logged, never raised);
    - with ``grounding``, the user's observations carry the facts of the items each recommender
      turn names (logged in that turn's ``meta["about"]``); the recommender's never do;
    - with ``candidates``, each recommender turn is shown catalogue items retrieved from the
      conversation (``meta["candidates"]``); the user never sees them.
    """

    def __init__(self, user: AgentHandle, recommender: AgentHandle, config: EnvConfig | None = None):
        self.agents = {Role.USER: user, Role.RECOMMENDER: recommender}
        self.config = config or EnvConfig()

    @staticmethod
    def _validate(turn: Turn, role: Role, recommended: list[str]) -> Turn:
        if not isinstance(turn, Turn):
            raise ProtocolError(ProtocolErrorKind.EMPTY, f"agent returned {type(turn).__name__}, not a Turn", None)
        checked = check_turn(turn, role)
        if checked.action in TITLE_REQUIRED and not checked.titles:
            raise ProtocolError(ProtocolErrorKind.MISSING_RESPONSE,
                                f"{checked.action.value} without a <movie_title>", turn.raw)
        if checked.action not in legal_actions(role, bool(recommended)):
            raise ProtocolError(ProtocolErrorKind.ROLE_ACTION,
                                f"{checked.action.value} before any recommendation", turn.raw)
        return Turn(checked.action, checked.text, raw=turn.raw, meta=turn.meta)

    async def run(
        self, episode_id: str, spec: EpisodeSpec, seed: int, user_spec: str = "", recommender_spec: str = ""
    ) -> EpisodeLog:
        """Play the episode to its end."""
        cfg = self.config
        started = time.perf_counter()
        turns: list[TurnLog] = []
        history: list[HistoryTurn] = []
        recommended: list[str] = []
        termination = Termination.MAX_TURNS
        accepted: str | None = None
        error: str | None = None

        def finish() -> EpisodeLog:
            return EpisodeLog(
                episode_id=episode_id,
                record_id=spec.record_id,
                source=spec.source,
                seed=seed,
                user_spec=user_spec,
                recommender_spec=recommender_spec,
                persona=spec.persona,
                target=spec.target,
                turns=turns,
                termination=termination,
                num_turns=len(turns),
                accepted_item=accepted,
                recommended_items=recommended,
                error=error,
                wall_s=round(time.perf_counter() - started, 4),
            )

        try:
            await self.agents[Role.USER].reset(build_user_view(episode_id, spec))
            await self.agents[Role.RECOMMENDER].reset(
                build_recommender_view(episode_id, spec, with_persona=cfg.recommender_sees_persona)
            )
        except Exception as exc:  # agent failure at reset ends the episode, never the run
            termination, error = Termination.AGENT_ERROR, _describe(exc)
            return finish()

        role = cfg.first_speaker
        for index in range(cfg.max_turns):
            failed: list[FailedAttempt] = []
            turn: Turn | None = None
            t0 = time.perf_counter()
            shown: list[str] = []
            if role is Role.USER:
                seen = strip_candidates(history)
            else:
                seen = strip_grounding(history)
                if cfg.candidates is not None and cfg.candidates_k > 0:
                    shown = await asyncio.to_thread(cfg.candidates.retrieve, history, cfg.candidates_k)
            for attempt in range(cfg.max_retries + 1):
                obs = Observation(history=seen, turn_index=index, attempt=attempt,
                                  turns_left=cfg.max_turns - index - 1, candidates=shown)
                try:
                    out = await self.agents[role].act(obs)
                    turn = self._validate(out, role, recommended)
                    break
                except ProtocolError as exc:
                    failed.append(FailedAttempt(raw=exc.raw, error=str(exc)))
                except Exception as exc:
                    termination, error = Termination.AGENT_ERROR, _describe(exc)
                    turns.append(
                        TurnLog(index=index, role=role, action=None, text=None, parse_error=None,
                                latency_s=time.perf_counter() - t0, failed_attempts=failed)
                    )
                    return finish()
            latency = time.perf_counter() - t0
            if turn is None:
                last = failed.pop()
                turns.append(
                    TurnLog(index=index, role=role, action=None, text=None, raw=last.raw,
                            parse_error=last.error, latency_s=latency, failed_attempts=failed)
                )
                termination, error = Termination.PROTOCOL_ERROR, last.error
                return finish()
            said = HistoryTurn(role=role, action=turn.action, text=turn.text, candidates=shown)
            meta = dict(turn.meta)
            if shown:
                meta["candidates"] = shown
            if cfg.grounding is not None and role is Role.RECOMMENDER:
                said.about = turn_facts(said, cfg.grounding, spec.target)
                if said.about:  # what the user was shown, in the log
                    meta["about"] = [f.model_dump() for f in said.about]
            turns.append(
                TurnLog(index=index, role=role, action=turn.action, text=turn.text, titles=turn.titles,
                        raw=turn.raw, latency_s=latency, failed_attempts=failed, meta=meta)
            )
            history.append(said)
            if turn.action is Action.RECOMMEND:
                recommended.extend(t for t in turn.titles if t not in recommended)
            if turn.action is Action.ACCEPT:
                termination = Termination.ACCEPTED
                accepted = _accepted_title(turn, history)
                return finish()
            role = role.other
        return finish()


def _accepted_title(turn: Turn, history: list[HistoryTurn]) -> str | None:
    """The item accepted: a title named in the accept turn, else the last one recommended."""
    if turn.titles:
        return turn.titles[0]
    for past in reversed(history):
        if past.role is Role.RECOMMENDER and past.action is Action.RECOMMEND:
            titles = Turn(past.action, past.text).titles
            if titles:
                return titles[-1]
    return None


def _describe(exc: BaseException) -> str:
    tb = traceback.format_exception_only(type(exc), exc)
    return "".join(tb).strip()[-2000:]
