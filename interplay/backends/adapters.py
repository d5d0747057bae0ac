"""LoRA adapters of a simulator: small files on top of a base model.

An adapter folder holds PEFT's ``adapter_config.json`` and ``adapter_model.safetensors`` (the LoRA
matrices and, as PEFT *trainable token rows*, the rows of the added action and tag tokens, not a
copy of the whole embedding), the tokenizer with the added tokens and ``interplay_training.json``.
Its base is recorded by the name it was given (``smollm2-135m-instruct`` for the default model), so
the folder works on any machine: :func:`load_adapter_model` resolves the base, adds the tokens and
merges the adapter once at load, after which it runs as fast as a full checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path | None) -> bool:
    """Whether ``path`` is a LoRA adapter folder (``adapter_config.json`` inside)."""
    return bool(path) and (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str | None:
    """The base model an adapter folder was trained on (a name or path; None: the default model)."""
    return json.loads((Path(path) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or None


def added_token_ids(tokenizer) -> list[int]:
    """Ids of the project's added tokens (actions, turn tags) in ``tokenizer``."""
    from interplay.added_tokens import ADDED_TOKENS

    return sorted(tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS)))


def lora_config(rank: int, alpha: int, targets: list[str], token_ids: list[int]):
    """PEFT LoRA config: low-rank updates of ``targets`` and the ``token_ids`` rows of the input
    embedding as trainable token rows (PEFT ties them to a tied output layer)."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, task_type="CAUSAL_LM",
                      trainable_token_indices={"embed_tokens": token_ids})


def _base_with_tokens(base: str | None, dtype):
    """The base model resized for the added tokens, and the tokenizer with them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interplay.backends.default_model import resolve_model_path
    from interplay.added_tokens import add_special_tokens

    path = resolve_model_path(base)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    add_special_tokens(tok, model)
    return model, tok


def _check_tokens(path: Path, tok) -> None:
    config = json.loads((path / ADAPTER_CONFIG).read_text())
    wanted = (config.get("trainable_token_indices") or {}).get("embed_tokens")
    if wanted is not None and sorted(wanted) != added_token_ids(tok):
        raise ValueError(f"{path / ADAPTER_CONFIG}: field trainable_token_indices {sorted(wanted)} are not the "
                         f"added tokens' ids {added_token_ids(tok)} of its base model's tokenizer")


def load_adapter_for_training(path: str | Path, dtype):
    """A trainable PEFT model continuing the adapter at ``path`` (a second training stage), its
    tokenizer, and the adapter's base name."""
    from peft import PeftModel

    path = Path(path)
    base = adapter_base(path)
    model, tok = _base_with_tokens(base, dtype)
    _check_tokens(path, tok)
    return PeftModel.from_pretrained(model, path, is_trainable=True), tok, base


def load_adapter_model(path: str | Path, dtype):
    """The adapter at ``path`` merged into its base model (for inference), and its tokenizer."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    path = Path(path)
    model, tok = _base_with_tokens(adapter_base(path), dtype)
    _check_tokens(path, tok)
    merged = PeftModel.from_pretrained(model, path).merge_and_unload()
    if (path / "tokenizer_config.json").is_file():  # the saved tokenizer (chat template, pad token)
        tok = AutoTokenizer.from_pretrained(path)
    return merged, tok


def save_adapter(model, tokenizer, out: str | Path, base: str | None) -> None:
    """Write the adapter of a PEFT ``model`` (weights, config naming ``base``) and the tokenizer."""
    from interplay.backends.default_model import DEFAULT_MODEL

    out = Path(out)
    # the resized embedding is not saved: the base is resized the same way at load, and the added
    # tokens' rows are in the adapter as trainable token rows
    model.save_pretrained(out, save_embedding_layers=False)
    config_path = out / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base or DEFAULT_MODEL  # a name that resolves anywhere, not a cache path
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(out)


def adapter_size_mb(path: str | Path) -> float:
    """Size of an adapter folder's files in MB (the shipped adapters stay under 25)."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file()) / 1e6


def merge_adapter(path: str | Path, out: str | Path) -> Path:
    """Write the adapter at ``path`` merged into its base as a full checkpoint at ``out`` (for
    backends that load plain checkpoints only, e.g. vLLM); the training record comes along."""
    import shutil

    import torch

    model, tok = load_adapter_model(path, torch.float32)
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    record = Path(path) / "interplay_training.json"
    if record.is_file():
        shutil.copy(record, out / record.name)
    return out
