"""How a simulation decodes each role's turns: the simulation defaults and per-role settings.

A simulation samples by default (seeded per episode, turn and attempt, so runs are reproducible)
with the repetition controls of :mod:`interplay.backends.decoding_controls` on, and caps each
role's turns at a high percentile of people's turn lengths (:mod:`interplay.turn_caps`).
Evaluations keep :class:`~interplay.backends.base.GenerationParams`' own defaults (greedy, every
control off), so their figures stay reproducible and comparable with earlier ones.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from interplay.backends.base import GenerationParams
from interplay.protocol import Role

#: the repetition controls added after run configs were first written: a saved config without
#: any of them ran with all of them off
CONTROLS_OFF = {"repetition_penalty": 1.0, "no_repeat_ngram": 0, "partner_no_repeat_ngram": 0}
#: the ban against the speaker's own earlier turns, added later still: a saved config without it ran without it
OWN_OFF = {"own_no_repeat_ngram": 0}


class SimulationGeneration(GenerationParams):
    """:class:`GenerationParams` with the simulation defaults: seeded sampling and the repetition
    controls on (``--temperature 0 --repetition-penalty 1 --no-repeat-ngram 0
    --partner-no-repeat-ngram 0 --own-no-repeat-ngram 0`` is the greedy decoding of earlier runs)."""

    temperature: float = Field(0.7, ge=0.0, description="sampling temperature; 0 = greedy")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling: sample from the smallest set of tokens "
                         "whose probability reaches top_p (1 = all; sampled decoding only)")
    repetition_penalty: float = Field(1.1, gt=0.0, description="divide (multiply, when negative) the logit of every "
                                      "token already in this turn by this (1 = off)")
    no_repeat_ngram: int = Field(3, ge=0, description="never repeat a token n-gram of this size within a turn (0 = off)")
    partner_no_repeat_ngram: int = Field(4, ge=0, description="never copy a token n-gram of this size from the "
                                         "partner's last turn (0 = off)")
    # 5 tokens: with titles set aside, 2.5% of people's user turns and 3.4% of their recommender turns
    # in ReDial test share a 5-token n-gram with an earlier turn of their own (docs/simulators.md)
    own_no_repeat_ngram: int = Field(5, ge=0, description="never repeat a token n-gram of this size from the "
                                     "speaker's own earlier turns of the episode (0 = off)")


#: the repetition controls of :class:`SimulationGeneration`, by name
REPETITION_CONTROLS = ("repetition_penalty", "no_repeat_ngram", "partner_no_repeat_ngram", "own_no_repeat_ngram")


def with_simulation_controls(params: GenerationParams) -> GenerationParams:
    """``params`` with the simulation's repetition controls (their defaults in
    :class:`SimulationGeneration`) and its own temperature: what an evaluation decodes with when
    asked to judge a simulator as it runs in simulations, greedy and reproducible."""
    defaults = SimulationGeneration()
    return params.model_copy(update={k: getattr(defaults, k) for k in REPETITION_CONTROLS})


def simulation_generation(value: object) -> object:
    """A run config's ``generation`` value with the simulation defaults for what it leaves out,
    except in a config saved before the repetition controls existed (it holds ``stop`` and none
    of them), which ran with them off, and one saved before the ban against the speaker's own
    turns (no ``own_no_repeat_ngram``), which ran without it."""
    if isinstance(value, dict):
        if "stop" in value and not any(k in value for k in CONTROLS_OFF):
            value = {**value, **CONTROLS_OFF}
        if "stop" in value and not any(k in value for k in OWN_OFF):
            value = {**value, **OWN_OFF}
        return SimulationGeneration.model_validate(value)
    return value


class RoleDecoding(BaseModel):
    """One role's own decoding settings in a simulation; each field left None takes the run's
    ``generation`` value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0.0, description="this role's sampling temperature (0 = greedy)")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="this role's nucleus sampling mass")
    repetition_penalty: float | None = Field(None, gt=0.0, description="this role's repetition penalty (1 = off)")
    no_repeat_ngram: int | None = Field(None, ge=0, description="this role's within-turn n-gram ban (0 = off)")
    partner_no_repeat_ngram: int | None = Field(None, ge=0, description="this role's n-gram ban against the "
                                                "partner's last turn (0 = off)")
    own_no_repeat_ngram: int | None = Field(None, ge=0, description="this role's n-gram ban against its own "
                                            "earlier turns (0 = off)")
    max_new_tokens: int | None = Field(None, ge=1, description="this role's turn cap in tokens (None: the cap "
                                       "taken from the data, else the run's max_new_tokens)")

    def apply(self, base: GenerationParams, data_cap: int | None = None) -> GenerationParams:
        """``base`` with this role's settings; the turn cap is this role's ``max_new_tokens``,
        else ``data_cap`` (never above ``base.max_new_tokens``), else ``base.max_new_tokens``."""
        update = {k: v for k, v in self.model_dump().items() if v is not None}
        if self.max_new_tokens is None and data_cap is not None:
            update["max_new_tokens"] = max(1, min(base.max_new_tokens, data_cap))
        return base.model_copy(update=update)


def role_params(generation: GenerationParams, decoding: dict[Role, RoleDecoding],
                caps: dict[Role, int] | None = None) -> dict[Role, GenerationParams]:
    """Each role's generation settings: ``generation`` with that role's :class:`RoleDecoding`
    and its turn cap from the data (``caps``)."""
    caps = caps or {}
    return {role: decoding.get(role, RoleDecoding()).apply(generation, caps.get(role)) for role in Role}
