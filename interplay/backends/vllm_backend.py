"""vLLM in-process backend (optional; GPU): ``LLM.generate`` on a whole batch of prompts.

Imported lazily, so the project installs and runs without vLLM. vLLM schedules its own continuous
batch: the runtime gives its model server ``max_batch >= 2 * concurrency`` (every request that is
waiting, both roles) instead of serialising small batches.
"""

from __future__ import annotations

import logging

from interplay.backends.builtin_capabilities import VLLM
from interplay.backends.base import GenerationParams
from interplay.backends.default_model import resolve_model_path

log = logging.getLogger(__name__)


def sampling_fields(params: GenerationParams, seed: int | None = None) -> tuple[dict, list[str]]:
    """The vLLM ``SamplingParams`` fields of one request's settings, and the settings vLLM has no
    field for (the n-gram bans: vLLM has no per-request no-repeat-n-gram option, so they are not
    applied there). vLLM's ``repetition_penalty`` also counts the prompt's tokens, where the
    transformers backend counts only the turn's own."""
    sampled = params.temperature > 0
    fields = dict(max_tokens=params.max_new_tokens, temperature=params.temperature,
                  top_p=params.top_p if sampled else 1.0, stop=list(params.stop) or None,
                  include_stop_str_in_output=True, repetition_penalty=params.repetition_penalty,
                  seed=(params.seed if seed is None else seed) if sampled else None)
    gaps = [name for name in ("no_repeat_ngram", "partner_no_repeat_ngram", "own_no_repeat_ngram")
            if getattr(params, name) > 0]
    return fields, gaps


class VLLMBackend:
    """A model served by vLLM inside this process (one per model server actor)."""

    def __init__(self, model: str | None, dtype: str = "auto", num_threads: int | None = None,
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = 8192):
        from interplay.backends.adapters import is_adapter

        if is_adapter(model):
            raise ValueError(f"{model} is a LoRA adapter folder; the vLLM backend loads full checkpoints: "
                             f"interplay merge-adapter {model} --out MERGED, then use MERGED")
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
        self._warned = False

    #: requests may carry a TurnConstraint, applied through vLLM structured outputs, and their own settings
    capabilities = VLLM

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
            if c.narrowed:  # a per-turn title list (candidates) or exclusions: not kept
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

    def generate(self, prompts: list[str], params: GenerationParams, constraints: list | None = None,
                 row_params: list[GenerationParams] | None = None) -> list[str]:
        """Completions of ``prompts``; ``row_params[i]`` (default ``params``) are prompt ``i``'s own
        settings (:func:`sampling_fields`), ``constraints[i]`` its turn grammar."""
        from vllm import SamplingParams

        if not prompts:
            return []
        cons = constraints or [None] * len(prompts)
        sps = []
        for p, c in zip(row_params or [params] * len(prompts), cons):
            fields, gaps = sampling_fields(p)
            if gaps and not self._warned:
                log.warning("vLLM has no per-request n-gram ban: %s not applied (repetition_penalty is)", ", ".join(gaps))
                self._warned = True
            sps.append(SamplingParams(**fields, **(self._structured(self._grammar(c)) if c is not None else {})))
        outputs = self.llm.generate(prompts, sps, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

