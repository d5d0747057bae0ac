"""An actor hosting one role's agents for every concurrent episode of a run.

Each episode gets a fresh agent (built from the spec) at ``reset`` and drops it at ``close``.
LLM agents generate through the run's shared model server, so many episodes' requests meet there
in one batch. Protocol errors come back as values (not raised) so their kind and raw text survive.
"""

from __future__ import annotations

import threading

from interplay.agent import Agent
from interplay.agent_specs import AgentContext, AgentSpec, build_agent
from interplay.backends.base import GenerationParams
from interplay.catalogue import Catalogue
from interplay.episode import Observation, RecommenderView, UserView
from interplay.protocol import ProtocolError, Role, Turn


class AgentHost:
    """Agents of one role, keyed by episode id (use as a threaded Ray actor)."""

    def __init__(self, spec: str, role: Role, catalogue: Catalogue, params: GenerationParams,
                 model_server=None, model_path: str | None = None):
        self.spec = AgentSpec.parse(spec)
        self.role = role
        self.catalogue = catalogue
        self.params = params
        self.backend = None
        self.tokenizer = None
        if model_server is not None:
            from transformers import AutoTokenizer

            from interplay.runtime.model_server import RemoteBackend

            self.backend = RemoteBackend(model_server)
            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self._agents: dict[str, Agent] = {}
        self._lock = threading.Lock()

    def reset(self, episode_id: str, view: UserView | RecommenderView, seed: int) -> None:
        ctx = AgentContext(role=self.role, arg=self.spec.arg, catalogue=self.catalogue, seed=seed,
                           params=self.params, backend=self.backend, tokenizer=self.tokenizer)
        agent = build_agent(self.spec, ctx)
        agent.reset(view)
        with self._lock:
            self._agents[episode_id] = agent

    def act(self, episode_id: str, observation: Observation) -> Turn | ProtocolError:
        agent = self._agents[episode_id]
        try:
            return agent.act(observation)
        except ProtocolError as exc:
            return exc

    def close(self, episode_id: str) -> None:
        with self._lock:
            self._agents.pop(episode_id, None)


class RayAgentHandle:
    """The environment's handle on one episode's agent inside an :class:`AgentHost` actor."""

    def __init__(self, host, episode_id: str, seed: int):
        self.host, self.episode_id, self.seed = host, episode_id, seed

    async def reset(self, view: UserView | RecommenderView) -> None:
        await self.host.reset.remote(self.episode_id, view, self.seed)

    async def act(self, observation: Observation) -> Turn:
        result = await self.host.act.remote(self.episode_id, observation)
        if isinstance(result, ProtocolError):
            raise result
        return result

    async def close(self) -> None:
        await self.host.close.remote(self.episode_id)
