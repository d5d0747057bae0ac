"""Zero-shot LLM agents: an instruction-tuned model prompted in either role (the paper's baselines).

The prompts mirror what the fine-tuned simulators see (the fair-comparison rule): the user prompt
has the persona and the target's attributes, the recommender prompt the persona and the dialogue
so far (the ``zero-shot`` kinds turn ``recommender_sees_persona`` on). Both ask for the protocol's
wire format with one worked example (:mod:`interplay.prompting`). Nothing is prefilled, so a local
model and the same model behind an OpenAI-compatible server get the same prompt. Answers are read
with :func:`interplay.fallback.parse_with_fallback` (reasoning blocks stripped; the rule used when
the protocol fails is kept in ``turn.meta["fallback"]``).
"""

from __future__ import annotations

from agents.llm import LLMAgent
from interplay.episode import Observation
from interplay.fallback import parse_with_fallback
from interplay.protocol import Action, Role, Turn


class ZeroShotAgent(LLMAgent):
    """Shared logic of the zero-shot user and recommender."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefill", "")
        super().__init__(*args, **kwargs)

    def parse(self, raw: str, observation: Observation) -> Turn:
        last = observation.last
        after_rec = last is not None and last.role is Role.RECOMMENDER and last.action is Action.RECOMMEND
        return parse_with_fallback(raw, self.role, self.catalogue, after_recommendation=after_rec,
                                   first_turn=not observation.history)


class ZeroShotUser(ZeroShotAgent):
    """Zero-shot user simulator (spec ``zero-shot:MODEL`` in the user role)."""

    role = Role.USER


class ZeroShotRecommender(ZeroShotAgent):
    """Zero-shot recommender (spec ``zero-shot:MODEL`` in the recommender role)."""

    role = Role.RECOMMENDER
