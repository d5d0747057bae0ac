"""The backend interface: prompts in, completions out, in batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from interplay.protocol import RESPONSE_CLOSE, Action, Role


class GenerationParams(BaseModel):
    """Sampling settings of one request. ``temperature == 0`` means greedy decoding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(96, ge=1, description="generation cap per turn")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling: sample from the smallest set of tokens "
                         "whose probability reaches top_p (1 = all; sampled decoding only)")
    repetition_penalty: float = Field(1.0, gt=0.0, description="divide (multiply, when negative) the logit of every "
                                      "token already in this turn by this (1 = off; CTRL's penalty, transformers' "
                                      "RepetitionPenaltyLogitsProcessor)")
    no_repeat_ngram: int = Field(0, ge=0, description="never repeat a token n-gram of this size within a turn "
                                 "(0 = off; transformers' NoRepeatNGramLogitsProcessor)")
    partner_no_repeat_ngram: int = Field(0, ge=0, description="never copy a token n-gram of this size from the "
                                         "partner's last turn (0 = off)")
    own_no_repeat_ngram: int = Field(0, ge=0, description="never repeat a token n-gram of this size from the "
                                     "speaker's own earlier turns of the episode (0 = off)")
    #: the partner's last turn (its text), set per request by the agent for partner_no_repeat_ngram
    partner_turn: str = ""
    #: the speaker's own earlier turns (their texts), set per request by the agent for own_no_repeat_ngram
    own_turns: tuple[str, ...] = ()
    stop: tuple[str, ...] = (RESPONSE_CLOSE,)
    seed: int = 0
    decoding: Literal["constrained", "free"] = Field(
        "constrained", description="constrained: LLM agents generate only legal turns (turn grammar, catalogue "
        "titles; interplay.backends.constrained); free: free text parsed afterwards")
    titles: Literal["catalogue", "candidates", "new"] = Field(
        "catalogue", description="constrained decoding: recommendations name any catalogue title; 'candidates' "
        "(runs with --recommender-candidates) only the candidates shown at that turn; 'new' no title already "
        "named in the episode, by either side (a recommender's turns only: a user names any)")

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one generate call of a backend that takes one
        params for the batch (seed, partner and own turns and decoding mode aside: each request
        carries its own seed, earlier turns and constraint)."""
        return (self.max_new_tokens, self.temperature, self.top_p, self.stop, self.repetition_penalty,
                self.no_repeat_ngram, self.partner_no_repeat_ngram, self.own_no_repeat_ngram)

    def row_batch_key(self) -> tuple:
        """Requests with equal keys can share one generate call of a backend that takes each
        request's own params (``BackendCapabilities.row_params``): only the stop strings must agree."""
        return (self.stop,)

    @property
    def repetition_controls_on(self) -> bool:
        """Whether any repetition control is set (penalty, n-gram bans), whatever the turns it reads."""
        return (self.repetition_penalty != 1.0 or self.no_repeat_ngram > 0 or self.partner_no_repeat_ngram > 0
                or self.own_no_repeat_ngram > 0)

    @property
    def repetition_controls(self) -> bool:
        """Whether any repetition control is on (penalty, n-gram bans)."""
        return (self.repetition_penalty != 1.0 or self.no_repeat_ngram > 0
                or (self.partner_no_repeat_ngram > 0 and bool(self.partner_turn))
                or (self.own_no_repeat_ngram > 0 and bool(self.own_turns)))


class TurnConstraint(BaseModel):
    """What one generated turn may be: one of ``actions`` (for ``role``), naming titles of the
    registered catalogue ``catalogue`` only; ``prefill`` is the part of the turn already at the
    end of the prompt (e.g. ``<action>``). ``titles`` narrows the catalogue to these of its
    titles for this turn (a recommender's candidates; None: the whole catalogue); ``exclude``
    takes these titles out of it (the titles already named in the episode, ``titles="new"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: tuple[Action, ...]
    role: Role | None = None
    catalogue: str | None = None
    prefill: str = ""
    titles: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    @property
    def narrowed(self) -> bool:
        """Whether this turn may name only part of its catalogue (a grammar of its own)."""
        return self.titles is not None or bool(self.exclude)


def check_candidate_titles(generation: GenerationParams, candidates: int) -> None:
    """ValueError when a run asks for titles from the candidates but shows none."""
    if generation.titles == "candidates" and candidates <= 0:
        raise ValueError("titles 'candidates' names only the recommender's candidates: give --recommender-candidates K")


def constraint_titles(constraint: TurnConstraint, catalogues: dict[str, list[str]]) -> list[str] | None:
    """The titles ``constraint`` lets a turn name, given a backend's registered catalogues: its
    catalogue's titles, narrowed to ``constraint.titles`` when given, less ``constraint.exclude``
    (None: any title)."""
    if constraint.catalogue is None:
        return None
    titles = catalogues.get(constraint.catalogue, [])
    if constraint.titles is not None:
        known = set(titles)
        titles = [t for t in dict.fromkeys(constraint.titles) if t in known]
    if constraint.exclude:
        gone = set(constraint.exclude)
        titles = [t for t in titles if t not in gone]
    return titles


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend can do beyond ``generate(prompts, params)``; a backend declares them as its
    ``capabilities`` attribute, and callers read them with :func:`capabilities_of`."""

    #: ``generate(..., constraints=[TurnConstraint | None, ...])`` and ``register_catalogue``
    constraints: bool = False
    #: ``rank_titles(prompts, catalogue, k, beam)``: catalogue titles by likelihood
    ranking: bool = False
    #: ``score_continuations(prompts, continuations)``: log-likelihoods (decisions without generating)
    scoring: bool = False
    #: ``generate(..., cache_keys=, seeds=, keep_caches=)``: per-request KV reuse and seeding
    request_keys: bool = False
    #: a chat API that applies its own template: agents send ``chat(messages, ...)``, not prompts
    chat: bool = False
    #: ``generate(..., row_params=[GenerationParams, ...])``: each request decoded with its own
    #: settings (sampling, repetition controls, turn cap) in one batch
    row_params: bool = False
    #: schedules its own continuous batch (vLLM): the model server hands it everything that waits
    continuous_batching: bool = False
    #: keeps each conversation's KV between turns when given a prefix-cache budget (``prefix_cache_mb=``)
    prefix_cache: bool = False
    #: safe to call from several threads at once (else the studio serialises its calls)
    thread_safe: bool = False
    #: loads a local checkpoint folder, which is checked (``config.json`` or an adapter) before a run starts
    local_checkpoints: bool = False
    #: ``stats() -> dict``: its own counters by section (generation, caches, constraints), reported
    #: with the model server's
    stats: bool = False


class GenerationBackend(Protocol):
    """Anything that completes a batch of prompts."""

    def generate(self, prompts: list[str], params: GenerationParams) -> list[str]: ...


def capabilities_of(backend: object) -> BackendCapabilities:
    """The backend's declared capabilities (none beyond ``generate`` when it declares nothing)."""
    caps = getattr(backend, "capabilities", None)
    return caps if isinstance(caps, BackendCapabilities) else BackendCapabilities()


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Cut a completion just after the first stop string it contains (the stop string is kept)."""
    best = None
    for s in stop:
        i = text.find(s)
        if i >= 0 and (best is None or i + len(s) < best):
            best = i + len(s)
    return text if best is None else text[:best]
