"""RecommendationEnv: one episode, strict alternation, protocol checks, termination.

The environment is transport-agnostic: it talks to each agent through an :class:`AgentHandle`
(``reset`` / ``act`` coroutines). :class:`LocalAgentHandle` wraps an in-process agent; the Ray
runtime supplies handles that call agents hosted in actors. The environment alone builds the
views, so the user agent never receives the target title or id.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from environments.episode_core import EnvConfig, EpisodeCore
from interplay.agent import Agent
from interplay.episode import EpisodeSpec, Observation, RecommenderView, UserView
from interplay.episode_log import EpisodeLog
from interplay.protocol import Role, Turn

__all__ = ["AgentHandle", "EnvConfig", "LocalAgentHandle", "RecommendationEnv"]


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

    async def run(
        self, episode_id: str, spec: EpisodeSpec, seed: int, user_spec: str = "", recommender_spec: str = ""
    ) -> EpisodeLog:
        """Play the episode to its end: a loop over :class:`~environments.episode_core.EpisodeCore`."""
        core = EpisodeCore(self.config)
        try:
            views = core.reset(episode_id, spec, seed, user_spec, recommender_spec)
        except Exception as exc:  # the view would leak the target: no agent's failure
            core.fail(exc)
            return core.log()
        for role in (Role.USER, Role.RECOMMENDER):
            try:
                await self.agents[role].reset(views[role])
            except Exception as exc:  # agent failure at reset ends the episode, never the run
                core.fail(exc, role)
                return core.log()
        retrieves = self.config.candidates is not None and self.config.candidates_k > 0
        while not core.done:
            role = core.next_role
            # candidate retrieval encodes the conversation: off the event loop, like an agent's act
            obs = await asyncio.to_thread(core.observation) if retrieves and role is Role.RECOMMENDER \
                else core.observation()
            try:
                out: Turn | BaseException = await self.agents[role].act(obs)
            except Exception as exc:  # a ProtocolError is retried; anything else ends the episode
                out = exc
            core.step(out)
        return core.log()
