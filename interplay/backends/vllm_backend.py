"""vLLM in-process backend (optional; GPU): ``LLM.generate`` on a whole batch of prompts.

Imported lazily, so the project installs and runs without vLLM. vLLM schedules its own continuous
batch: the runtime gives its model server ``max_batch >= 2 * concurrency`` (every request that is
waiting, both roles) instead of serialising small batches.
"""

from __future__ import annotations

from interplay.backends.base import GenerationParams
from interplay.backends.default_model import resolve_model_path


class VLLMBackend:
    """A model served by vLLM inside this process (one per model server actor)."""

    def __init__(self, model: str | None, dtype: str = "auto", num_threads: int | None = None,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = 8192):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise RuntimeError("the vLLM backend needs vLLM: pip install vllm (on a machine with a CUDA GPU); "
                               f"import failed: {exc}") from None
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("the vLLM backend needs a CUDA GPU and none is visible; "
                               "use 'zero-shot:MODEL' (transformers) on this machine")
        self.model_path = resolve_model_path(model)
        self.llm = LLM(model=self.model_path, dtype="auto" if dtype in ("auto", None) else dtype,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str], params: GenerationParams) -> list[str]:
        from vllm import SamplingParams

        if not prompts:
            return []
        sp = SamplingParams(max_tokens=params.max_new_tokens, temperature=params.temperature,
                            top_p=params.top_p if params.temperature > 0 else 1.0, stop=list(params.stop) or None,
                            include_stop_str_in_output=True, seed=params.seed if params.temperature > 0 else None)
        outputs = self.llm.generate(prompts, sp, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]
