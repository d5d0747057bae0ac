"""LLM-backed simulators: prompt a causal LM through a backend, parse with the protocol."""

from __future__ import annotations

from interplay.agent import Agent
from interplay.backends.base import GenerationBackend, GenerationParams
from interplay.catalogue import Catalogue
from interplay.episode import Observation
from interplay.prompting import build_messages, render_prompt
from interplay.protocol import ACTION_OPEN, ProtocolError, Role, Turn, parse_turn


class LLMAgent(Agent):
    """Shared logic of the LLM users and recommenders.

    ``backend`` generates (in-process, or a Ray model server shared by many episodes);
    ``tokenizer`` renders the prompt. The prompt ends with ``<action>`` so the model starts its
    turn in the protocol; the raw output logged is that prefix plus the completion. Retries after
    a malformed output sample at ``retry_temperature`` even under greedy decoding, so they can differ.
    """

    def __init__(self, backend: GenerationBackend, tokenizer, params: GenerationParams | None = None,
                 catalogue: Catalogue | None = None, seed: int = 0, retry_temperature: float = 0.7,
                 prefill: str = ACTION_OPEN):
        super().__init__(catalogue, seed)
        self.backend = backend
        self.tokenizer = tokenizer
        self.params = params or GenerationParams()
        self.retry_temperature = retry_temperature
        self.prefill = prefill

    def prompt(self, observation: Observation) -> str:
        """The full prompt for this observation (shown to the model verbatim)."""
        return render_prompt(self.tokenizer, self.messages(observation), self.prefill)

    def _params(self, observation: Observation) -> GenerationParams:
        seed = (self.seed * 1_000_003 + observation.turn_index * 101 + observation.attempt) % (2**31)
        temperature = self.params.temperature
        if observation.attempt > 0 and temperature == 0:
            temperature = self.retry_temperature
        return self.params.model_copy(update={"seed": seed, "temperature": temperature})

    def act_batch(self, observations: list[Observation]) -> list[Turn | ProtocolError]:
        groups: dict[GenerationParams, list[int]] = {}
        for i, obs in enumerate(observations):
            groups.setdefault(self._params(obs), []).append(i)
        results: list[Turn | ProtocolError | None] = [None] * len(observations)
        for params, idx in groups.items():
            if getattr(self.backend, "prefers_chat", False):  # a chat API applies its own template
                outputs = self.backend.chat([self.messages(observations[i]) for i in idx], params)
            else:
                outputs = self.backend.generate([self.prompt(observations[i]) for i in idx], params)
            for i, out in zip(idx, outputs):
                try:
                    results[i] = self.parse(self.prefill + out, observations[i])
                except ProtocolError as exc:
                    results[i] = exc
        return results  # type: ignore[return-value]

    def messages(self, observation: Observation) -> list[dict]:
        """The chat messages of this observation (what a chat API receives)."""
        return build_messages(self.role, self.view, observation.history)

    def parse(self, raw: str, observation: Observation) -> Turn:
        """The turn in ``raw``; strict protocol parsing (zero-shot agents add a fallback)."""
        return parse_turn(raw, role=self.role)

    def act(self, observation: Observation) -> Turn:
        result = self.act_batch([observation])[0]
        if isinstance(result, ProtocolError):
            raise result
        return result


class UserSimulator(LLMAgent):
    """LLM user simulator: sees the persona and target attributes, never the target title."""

    role = Role.USER


class RecommenderSimulator(LLMAgent):
    """LLM recommender simulator: sees the conversation (and the persona if configured)."""

    role = Role.RECOMMENDER


class FineTunedAgent(LLMAgent):
    """An LLM agent on a checkpoint from ``interplay train``: its prompt is the training
    serialisation itself (``interplay.training.serialize.inference_prompt``), so the model sees at
    inference exactly the token layout it was trained on, and it writes ``<action>`` itself."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefill", "")
        super().__init__(*args, **kwargs)
        from interplay.training.serialize import END

        self.params = self.params.model_copy(update={"stop": (*self.params.stop, END)})

    def prompt(self, observation: Observation) -> str:
        from interplay.training.serialize import inference_prompt

        return inference_prompt(self.role, self.view, observation.history)


class FineTunedUserSimulator(FineTunedAgent):
    """UserSim loaded from a checkpoint (spec ``usersim:CKPT_DIR``)."""

    role = Role.USER


class FineTunedRecommenderSimulator(FineTunedAgent):
    """RecSim loaded from a checkpoint (spec ``recsim:CKPT_DIR``)."""

    role = Role.RECOMMENDER
