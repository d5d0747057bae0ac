"""The settings every Ray run shares, simulation or evaluation: how its model servers and agent
host are started and batch (one definition; :class:`~interplay.runtime.simulation.SimulationConfig`
and :class:`~interplay.evaluation.config.EvalConfig` extend it, each with its own defaults where
they differ)."""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from interplay.backends.base import GenerationParams

#: fields a resumed run or evaluation may change (they decide speed, never results)
HOST_RESUMABLE = frozenset({"concurrency", "max_batch", "batch_wait_ms", "prefix_cache_mb", "prefix_cache_spill",
                            "actor_restarts"})


class HostSettings(BaseModel):
    """Actors, batching and generation settings of a run."""

    model_config = ConfigDict(extra="forbid")

    #: the fields holding agent specs (saved resolved for their role: never a bare ``llm``)
    SPEC_FIELDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def read_saved(cls, text: str) -> "HostSettings":
        """A saved ``config.json``. A bare ``llm`` in it was written before bare ``llm`` meant the
        shipped simulator of the role, when it meant the default model prompted: read as that, so
        resuming such a run with today's ``llm`` is refused instead of mixing two agents."""
        from interplay.agent_specs import LLM_BEFORE_SHIPPED

        data = json.loads(text)
        if isinstance(data, dict):
            data.update({k: LLM_BEFORE_SHIPPED for k in cls.SPEC_FIELDS if data.get(k) == "llm"})
        return cls.model_validate(data)

    generation: GenerationParams = Field(default_factory=GenerationParams, description="generation settings")

    concurrency: int = Field(32, ge=1, description="episodes (or tasks) in flight at once (measured: docs/performance.md)")
    max_batch: int = Field(32, ge=1, description="largest generation batch of a model server (docs/performance.md)")
    batch_wait_ms: float = Field(20.0, ge=0, description="a model server keeps collecting a batch while requests "
                                 "arrive less than this apart")
    dtype: str = Field("auto", description="auto (bf16 where the CPU/GPU supports it) | float32 | bfloat16 | float16")
    prefix_cache_mb: float = Field(1024.0, ge=0, description="MiB of conversation KV caches kept per model for reuse "
                                   "across turns (0: off, plain batched generate; docs/performance.md)")
    prefix_cache_spill: bool = Field(False, description="keep the stored KV caches in files (the kernel's page cache: "
                                     "reclaimable, written to disk under memory pressure) instead of the model "
                                     "server's memory; exact, measured in docs/performance.md")
    actor_restarts: int = Field(3, ge=0, description="times Ray restarts a model server or agent host whose process "
                                "died; the episodes or tasks in flight fail (infrastructure), the run goes on; past "
                                "this the run stops (resume it)")
