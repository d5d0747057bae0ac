"""Settings of an evaluation (saved as ``EVAL_DIR/config.json``; a resumed evaluation must match)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from interplay.agent_specs import AgentSpec, SpecField, parse_spec
from interplay.backends.base import GenerationParams, check_candidate_titles
from interplay.protocol import Role
from interplay.run_folder import prepare_run_folder
from interplay.runtime.host_settings import HOST_RESUMABLE, HostSettings

class EvalConfig(HostSettings):
    """What is evaluated, on which records, with which generation and scoring settings; the actor
    and batching fields come from :class:`~interplay.runtime.host_settings.HostSettings` (smaller
    batches by default: evaluations send fewer requests at once)."""

    kind: Literal["user", "recommender"]
    agent: SpecField = Field(description="agent spec under test: rule, llm (the shipped simulator of the role), "
                             "llm:MODEL (prompted), usersim:CKPT, recsim:CKPT, py:module:Class")
    data: str = Field(description="a folder from 'interplay data build'")
    split: str = Field("test", description="split to evaluate on")
    out: str = Field(description="evaluation folder (metrics.json, CSVs, plots)")
    limit: int | None = Field(None, ge=1, description="only the first N records of the split (None: all)")
    parts: list[str] = Field(default_factory=lambda: ["replay", "single", "human"],
                             description="user evaluation: the registered parts to run (interplay.evaluation.parts: "
                             "replay (SR/ET/FR), single (BERTScore...), human (real-human view), probe, nll, ...)")
    max_retries: int = Field(2, ge=0, description="retries of a malformed turn in replays")
    recommender_sees_persona: bool = Field(False, description="give the recommender the persona (prompted baselines)")
    grounded: bool = Field(True, description="user evaluation: the user sees the catalogue facts of each "
                           "recommended item (interplay.grounding)")
    decision: Literal["generate", "score"] = Field(
        "generate", description="real-human view: generate the reply and read its action, or score P(action) "
        "without generating (LLM agents; much faster; agents that cannot score fall back to generating)")
    accept_threshold: float | None = Field(None, ge=0.0, le=1.0, description="with --decision score: accept "
                                           "when P(accept) >= this (default: the checkpoint's calibrated threshold "
                                           "from 'interplay evaluate calibrate', else 0.5)")
    force_recommend: bool = Field(True, description="recommender evaluation: narrow the scored turn to a "
                                  "recommendation (honoured under constrained decoding)")
    rank_items: int = Field(0, ge=0, description="LLM recommenders: rank the catalogue by likelihood, top N "
                            "(Recall@10/50); exact ranking costs minutes per record on a CPU "
                            "(docs/structured_turns.md)")
    rank_beam: int = Field(0, ge=0, description="with --rank-items: 0 = exact ranking; B = beam search keeping B "
                           "title prefixes per token (approximate, seconds per record)")
    recommender_candidates: int = Field(0, ge=0, description="show the recommender K catalogue candidates retrieved "
                                        "from the conversation (interplay.candidates); 0: none")
    seed: int = Field(0, description="base seed")
    concurrency: int = Field(16, ge=1, description="tasks in flight")
    max_batch: int = Field(16, ge=1, description="largest generation batch")
    generation: GenerationParams = GenerationParams()
    bertscore_model: str | None = Field(None, description="local model folder for BERTScore (default: offline MiniLM)")
    bertscore_layers: int | None = Field(None, description="its layer (default: 6 for MiniLM)")
    matchscore_encoder: str | None = Field(None, description="item encoder folder (default: the one 'interplay "
                                           "matchscore train' writes)")

    # ``out``: an evaluation folder may be moved or copied and resumed where it now is
    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = HOST_RESUMABLE | {"out"}
    # the records are the split's first ``limit``: a resumption may take more of them (or all), and
    # the rows already written stay the same records
    GROWS_ON_RESUME: ClassVar[frozenset[str]] = frozenset({"limit", "parts"})

    @model_validator(mode="after")
    def _titles_need_candidates(self) -> "EvalConfig":
        check_candidate_titles(self.generation, self.recommender_candidates)
        return self

    @field_validator("parts")
    @classmethod
    def _known_parts(cls, value: list[str]) -> list[str]:
        from interplay.evaluation.parts import check_parts

        return check_parts(value)

    SPEC_FIELDS: ClassVar[tuple[str, ...]] = ("agent",)

    @field_validator("agent", mode="before")
    @classmethod
    def _parse_spec(cls, value: object, info: ValidationInfo) -> AgentSpec:
        # parsed once, here, and resolved for the role under test (bare llm: the shipped simulator)
        role = Role.USER if info.data.get("kind") == "user" else Role.RECOMMENDER
        return parse_spec(value if isinstance(value, AgentSpec) else str(value), role)

    @property
    def spec(self) -> AgentSpec:
        """The agent under test, as parsed by the config."""
        return self.agent

    def identity(self) -> dict:
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RESUMABLE_CHANGES}


def prepare_eval_dir(cfg: EvalConfig, resume: bool) -> Path:
    """Create ``cfg.out``; refuse to mix two evaluations in one folder (:mod:`interplay.run_folder`)."""
    return prepare_run_folder(cfg.out, cfg, resume, what="evaluation")
