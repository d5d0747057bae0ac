"""vLLM in-process backend (optional; GPU): ``LLM.generate`` on a whole batch of prompts.

Imported lazily, so the project installs and runs without vLLM. vLLM schedules its own continuous
batch: the runtime gives its model server ``max_batch >= 2 * concurrency`` (every request that is
waiting, both roles) instead of serialising small batches.
"""

from __future__ import annotations

from interplay.backends.base import BackendCapabilities, GenerationParams
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
        kwargs = dict(model=self.model_path, dtype="auto" if dtype in ("auto", None) else dtype,
                      gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        try:  # the turn grammar is llguidance Lark: vLLM's "guidance" structured-output backend
            self.llm = LLM(**kwargs, structured_outputs_config={"backend": "guidance"})
        except TypeError:  # vLLM before structured_outputs_config
            self.llm = LLM(**kwargs, guided_decoding_backend="guidance")
        self.tokenizer = self.llm.get_tokenizer()
        self.catalogues: dict[str, list[str]] = {}
        self._grammars: dict = {}

    #: requests may carry a TurnConstraint, applied through vLLM structured outputs
    capabilities = BackendCapabilities(constraints=True)

    def register_catalogue(self, key: str, titles: list[str]) -> None:
        """Titles that constrained turns may name under ``TurnConstraint.catalogue == key``."""
        self.catalogues.setdefault(key, list(titles))

    def validate_constraint(self, constraint) -> None:
        """Raise :class:`~interplay.turn_grammar.GrammarError` if no legal turn satisfies it."""
        self._grammar(constraint)

    def _grammar(self, c) -> str:
        """The turn grammar after the prompt's prefill (the same grammar as the transformers
        backend; tags that are one special token of this tokenizer are written ``<[ID]>``)."""
        from interplay.backends.base import constraint_titles
        from interplay.protocol import ACTION_OPEN
        from interplay.turn_grammar import GrammarError, token_literal, turn_grammar

        if c not in self._grammars:
            if c.prefill not in ("", ACTION_OPEN):
                raise GrammarError(f"the vLLM backend takes the prefill {ACTION_OPEN!r} or none, not {c.prefill!r}")
            grammar = turn_grammar(c.actions, constraint_titles(c, self.catalogues), c.role,
                                   token_literal(self.tokenizer), after_action_open=bool(c.prefill))
            if c.titles is not None:  # a per-turn title list (candidates): not kept
                return grammar
            self._grammars[c] = grammar
        return self._grammars[c]

    def _structured(self, grammar: str) -> dict:
        try:
            from vllm.sampling_params import StructuredOutputsParams

            return {"structured_outputs": StructuredOutputsParams(grammar=grammar)}
        except ImportError:  # older vLLM
            from vllm.sampling_params import GuidedDecodingParams

            return {"guided_decoding": GuidedDecodingParams(grammar=grammar)}

    def generate(self, prompts: list[str], params: GenerationParams, constraints: list | None = None) -> list[str]:
        from vllm import SamplingParams

        if not prompts:
            return []
        base = dict(max_tokens=params.max_new_tokens, temperature=params.temperature,
                    top_p=params.top_p if params.temperature > 0 else 1.0, stop=list(params.stop) or None,
                    include_stop_str_in_output=True, seed=params.seed if params.temperature > 0 else None)
        cons = constraints or [None] * len(prompts)
        sps = [SamplingParams(**base, **(self._structured(self._grammar(c)) if c is not None else {})) for c in cons]
        outputs = self.llm.generate(prompts, sps, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

