"""One actor hosting the agents of every role for every concurrent episode of a run.

Each episode gets a fresh agent per role (built from that role's spec) at ``reset`` and drops it
at ``close``. LLM agents generate through the run's shared model server, so many episodes' requests
meet there in one batch; each (episode, role) passes its own cache key so the server can reuse that
conversation's KV cache, and ``close`` releases it. A role's last possible turn under the episode's
max-turn cap asks the server not to keep its cache (it would never be reused: at the cap, those
entries were the largest part of the server's memory). Both roles live in one process (one copy of
transformers and the tokenizer instead of two), and the host never imports torch for its agents'
prompts (:func:`~interplay.prompting.load_prompt_tokenizer`): it stays near 100 MB instead of 470. Protocol errors come back as
values (not raised) so their kind and raw text survive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from interplay.agent import Agent
from interplay.agent_specs import AgentContext, AgentSpec, build_agent
from interplay.backends.base import BackendCapabilities, GenerationParams
from interplay.catalogue import Catalogue
from interplay.episode import Observation, RecommenderView, UserView
from interplay.protocol import ProtocolError, Role, Turn


class AgentLostError(ConnectionError):
    """An episode's agent is gone: the agent host was restarted after its process died (an
    infrastructure failure: the episode is worth re-running)."""


class AgentHost:
    """Agents of the given roles, keyed by (role, episode id) (use as a threaded Ray actor).

    ``model_servers`` and ``model_paths`` map a role to its model server actor and model path
    (absent for agents without a model); ``params`` are the generation settings of every role, or
    of each role (a dict)."""

    def __init__(self, specs: dict[Role, AgentSpec], catalogue: Catalogue,
                 params: GenerationParams | dict[Role, GenerationParams],
                 model_servers: dict | None = None, model_paths: dict | None = None):
        self.specs = dict(specs)
        self.catalogue = catalogue
        self.params = params if isinstance(params, dict) else {role: params for role in self.specs}
        self.servers = dict(model_servers or {})
        self.tokenizers: dict[Role, object] = {}
        loaded: dict[str, object] = {}
        for role, path in (model_paths or {}).items():
            if path not in loaded:
                from interplay.prompting import load_prompt_tokenizer

                loaded[path] = load_prompt_tokenizer(path)
            self.tokenizers[role] = loaded[path]
        # whether each role's server applies constraints, and the catalogue registered with it once
        self.constrains: dict[Role, bool] = {}
        self.ranks: dict[Role, bool] = {}
        self.scores: dict[Role, bool] = {}
        if self.servers:
            import ray

            by_server = {id(s): s for s in self.servers.values()}
            support = {k: ray.get(s.supports_constraints.remote()) for k, s in by_server.items()}
            ranks = {k: ray.get(s.supports_ranking.remote()) for k, s in by_server.items()}
            self.constrains = {role: support[id(s)] for role, s in self.servers.items()}
            self.ranks = {role: ranks[id(s)] for role, s in self.servers.items()}
            scoring = {k: ray.get(s.supports_scoring.remote()) for k, s in by_server.items()}
            self.scores = {role: scoring[id(s)] for role, s in self.servers.items()}
            if any(support.values()):
                titles = catalogue.titles()
                ray.get([s.register_catalogue.remote(catalogue.key, titles)
                         for k, s in by_server.items() if support[k]])
        self._agents: dict[tuple[Role, str], Agent] = {}
        self._backends: dict[tuple[Role, str], object] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _cache_key(role: Role, episode_id: str) -> str:
        return f"{episode_id}/{role.value}"

    def reset(self, role: Role, episode_id: str, view: UserView | RecommenderView, seed: int) -> None:
        backend = None
        if role in self.servers:
            from interplay.runtime.model_server import RemoteBackend

            backend = RemoteBackend(self.servers[role], cache_key=self._cache_key(role, episode_id),
                                    capabilities=BackendCapabilities(constraints=self.constrains.get(role, False),
                                                                     ranking=self.ranks.get(role, False),
                                                                     scoring=self.scores.get(role, False)))
        ctx = AgentContext(role=role, arg=self.specs[role].arg, catalogue=self.catalogue, seed=seed,
                           params=self.params[role], backend=backend, tokenizer=self.tokenizers.get(role))
        agent = build_agent(self.specs[role], ctx)
        agent.reset(view)
        with self._lock:
            self._agents[(role, episode_id)] = agent
            if backend is not None:
                self._backends[(role, episode_id)] = backend

    def _agent(self, role: Role, episode_id: str) -> Agent:
        try:
            return self._agents[(role, episode_id)]
        except KeyError:
            raise AgentLostError(f"no {role.value} agent for episode {episode_id} in this host (restarted?)") from None

    def ping(self) -> bool:
        """Whether the host answers (the driver asks after an infrastructure failure)."""
        return True

    def node(self) -> dict:
        """Where this actor runs (node id and IP)."""
        from interplay.runtime.model_server import actor_node

        return actor_node()

    def act(self, role: Role, episode_id: str, observation: Observation) -> Turn | ProtocolError:
        agent = self._agent(role, episode_id)
        backend = self._backends.get((role, episode_id))
        if backend is not None:  # turns alternate: a role speaks again two turns later, if at all
            backend.keep_cache = observation.turns_left is None or observation.turns_left >= 2
        try:
            return agent.act(observation)
        except ProtocolError as exc:
            return exc

    def action_probabilities(self, role: Role, episode_id: str, observation: Observation) -> dict[str, float] | None:
        """The agent's probability of each action at ``observation`` without generating (None:
        it cannot tell)."""
        return self._agent(role, episode_id).action_probabilities(observation)

    def turn_likelihood(self, role: Role, episode_id: str, observation: Observation,
                        turn: Turn) -> tuple[float, int] | None:
        """The agent's log-likelihood and token count of ``turn`` after ``observation`` (None: no model)."""
        return self._agent(role, episode_id).turn_likelihood(observation, turn)

    def close(self, role: Role, episode_id: str) -> None:
        with self._lock:
            self._agents.pop((role, episode_id), None)
            self._backends.pop((role, episode_id), None)
        if role in self.servers:  # free the conversation's KV cache in the model server
            import ray

            ray.get(self.servers[role].release.remote([self._cache_key(role, episode_id)]))

    def peak_rss_mb(self) -> float:
        from interplay.runtime.model_server import peak_rss_mb

        return peak_rss_mb()


@dataclass(frozen=True)
class HostRef:
    """One role's view of the shared :class:`AgentHost` actor."""

    actor: object
    role: Role


class RayAgentHandle:
    """The environment's handle on one episode's agent inside the :class:`AgentHost` actor."""

    def __init__(self, host: HostRef, episode_id: str, seed: int):
        self.host, self.episode_id, self.seed = host, episode_id, seed

    async def reset(self, view: UserView | RecommenderView) -> None:
        await self.host.actor.reset.remote(self.host.role, self.episode_id, view, self.seed)

    async def act(self, observation: Observation) -> Turn:
        result = await self.host.actor.act.remote(self.host.role, self.episode_id, observation)
        if isinstance(result, ProtocolError):
            raise result
        return result

    async def action_probabilities(self, observation: Observation) -> dict[str, float] | None:
        return await self.host.actor.action_probabilities.remote(self.host.role, self.episode_id, observation)

    async def turn_likelihood(self, observation: Observation, turn: Turn) -> tuple[float, int] | None:
        return await self.host.actor.turn_likelihood.remote(self.host.role, self.episode_id, observation, turn)

    async def close(self) -> None:
        await self.host.actor.close.remote(self.host.role, self.episode_id)
