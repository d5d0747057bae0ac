"""Settings of an evaluation (saved as ``EVAL_DIR/config.json``; a resumed evaluation must match)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from interplay.backends.base import GenerationParams

UserPart = Literal["replay", "single", "human"]


class EvalConfig(BaseModel):
    """What is evaluated, on which records, with which generation and scoring settings."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["user", "recommender"]
    agent: str
    data: str
    split: str = "test"
    out: str
    limit: int | None = Field(None, ge=1, description="first N records of the split (None: all)")
    parts: list[UserPart] = Field(default_factory=lambda: ["replay", "single", "human"])
    max_retries: int = Field(2, ge=0)
    recommender_sees_persona: bool = False
    #: user evaluation: the user sees the catalogue facts of each recommended item (interplay.grounding)
    grounded: bool = True
    #: user evaluation, real-human view: ``generate`` the reply and read its action, or ``score``
    #: the legal actions without generating (P(accept); agents that cannot score fall back to
    #: generating) and accept when P(accept) >= ``accept_threshold``
    decision: Literal["generate", "score"] = "generate"
    accept_threshold: float = Field(0.5, ge=0.0, le=1.0)
    #: recommender evaluation: narrow the scored turn to ``recommend`` (honoured under constrained decoding)
    force_recommend: bool = True
    #: recommender evaluation: ask LLM recommenders for their top-k catalogue titles by likelihood
    #: (Recall@10/50); 0 = off. Exact but costly on a CPU: 531 s for one ReDial record with the
    #: 135M model and 14.6k titles (docs/structured_turns.md)
    rank_items: int = Field(0, ge=0)
    #: recommender evaluation, with rank_items: 0 = exact ranking; B > 0 = beam search keeping B
    #: title prefixes per token depth (approximate; seconds per record)
    rank_beam: int = Field(0, ge=0)
    #: recommender evaluation: show the recommender K catalogue candidates retrieved from the
    #: conversation (interplay.candidates); 0: none
    recommender_candidates: int = Field(0, ge=0)
    seed: int = 0
    concurrency: int = Field(16, ge=1)
    max_batch: int = Field(16, ge=1)
    batch_wait_ms: float = 20.0
    dtype: str = "auto"
    generation: GenerationParams = GenerationParams()
    bertscore_model: str | None = None
    bertscore_layers: int | None = None
    matchscore_encoder: str | None = None

    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = frozenset({"concurrency", "max_batch", "batch_wait_ms"})

    def identity(self) -> dict:
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RESUMABLE_CHANGES}


def prepare_eval_dir(cfg: EvalConfig, resume: bool) -> Path:
    """Create ``cfg.out``; refuse to mix two evaluations in one folder."""
    out = Path(cfg.out)
    path = out / "config.json"
    if path.exists():
        old = EvalConfig.model_validate(json.loads(path.read_text()))
        if not resume:
            raise FileExistsError(f"{out} already holds an evaluation; pass --resume or choose another --out")
        diff = sorted(k for k, v in cfg.identity().items() if old.identity().get(k) != v)
        if diff:
            raise ValueError(f"{path}: cannot resume, these settings differ: {', '.join(diff)}")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.model_dump_json(indent=2) + "\n")
    return out
