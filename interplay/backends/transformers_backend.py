"""Local generation with transformers: batched, left-padded, stopping after ``</response>``."""

from __future__ import annotations

import threading

import torch

from interplay.backends.base import GenerationParams, cut_at_stop
from interplay.backends.default_model import resolve_model_path
from interplay.protocol import STRUCTURAL_TOKENS

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(dtype: str) -> torch.dtype:
    """``auto`` -> bfloat16 where the CPU/GPU supports it, else float32."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class TransformersBackend:
    """A causal LM from a HF id or local path (``None`` = the default model)."""

    def __init__(self, model: str | None = None, dtype: str = "auto", device: str | None = None,
                 num_threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if num_threads:
            torch.set_num_threads(num_threads)
        self.model_path = resolve_model_path(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=pick_dtype(dtype))
        self.model.to(self.device).eval()
        self._strip = [t for t in self.tokenizer.all_special_tokens if t and t not in STRUCTURAL_TOKENS]
        self._lock = threading.Lock()

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def generate(self, prompts: list[str], params: GenerationParams) -> list[str]:
        """Complete each prompt; greedy when ``params.temperature == 0``."""
        if not prompts:
            return []
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
            tokenizer=self.tokenizer,
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if params.temperature > 0:
                torch.manual_seed(params.seed)
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=False)
        return [cut_at_stop(self._clean(t), params.stop) for t in texts]

    def _clean(self, text: str) -> str:
        for tok in self._strip:
            text = text.replace(tok, "")
        return text
