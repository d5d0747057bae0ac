"""Recommender candidates: catalogue items retrieved from the conversation so far.

The user's words (their turns, newest last) are embedded with the offline MiniLM sentence
encoder and compared with every catalogue item, either in MiniLM space against the items'
texts (``space="text"``, the default) or through the MatchScore item encoder (``space="item"``:
the query's embedding projected like an item's, compared with the items' trained vectors), plus
``prior_weight`` x the item's popularity (log of 1 + how often the data's train recommenders
named it, scaled to [0, 1]). Items already named in the dialogue are left out.

Measured on ReDial valid (86 turns where the accepted item was recommended; Recall@10 / @50 of
the target among the candidates): text space 0.047 / 0.081, item space 0.012 / 0.035, popularity
alone 0.070 / 0.186, text + 0.2 x popularity 0.116 / 0.256, + 0.4 x 0.116 / 0.267: the default
is text space with prior weight 0.3. A recommender run with ``--recommender-candidates K`` sees
the top K in its prompt (``Observation.candidates``); it may still name any catalogue title.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.episode import HistoryTurn
from interplay.protocol import Role

TEXT_EMBEDDINGS_FILE = "text_embeddings.pt"


class CandidateRetriever:
    """Top-k catalogue items for a conversation (thread-safe; the models load once)."""

    def __init__(self, encoder_dir: str | Path, catalogue: Catalogue, space: str = "text", turns: int = 6,
                 popularity: dict[str, int] | None = None, prior_weight: float = 0.3):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from interplay.matchscore.encoder import ITEM_VECTORS_FILE, ItemEncoder
        from interplay.text_encoder import mean_pooled_embeddings

        if space not in ("text", "item"):
            raise ValueError(f"candidate space {space!r}: choose text or item")
        self.catalogue, self.space, self.turns = catalogue, space, turns
        self.encoder, cfg = ItemEncoder.load(encoder_dir)
        path = cfg.get("text_encoder")
        if path is None or not Path(path).exists():
            from interplay.text_encoder import minilm_path

            path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).eval()
        items = list(catalogue)
        self.titles = [it.title for it in items]
        saved = torch.load(Path(encoder_dir) / (TEXT_EMBEDDINGS_FILE if space == "text" else ITEM_VECTORS_FILE),
                           map_location="cpu", weights_only=True)
        key = "embeddings" if space == "text" else "vectors"
        by_id = dict(zip(saved["item_ids"], saved[key]))
        missing = [it for it in items if it.item_id not in by_id]
        if missing:  # items the encoder was not trained with: embedded from their text now
            from interplay.matchscore.encoder import item_text

            base = mean_pooled_embeddings([item_text(it) for it in missing], path)
            with torch.no_grad():
                fresh = base if space == "text" else torch.nn.functional.normalize(self.encoder(base), dim=-1)
            by_id.update(zip((it.item_id for it in missing), fresh))
        self.matrix = torch.stack([by_id[it.item_id] for it in items]).float()
        prior = torch.tensor([math.log1p((popularity or {}).get(t, 0)) for t in self.titles])
        self.prior = prior_weight * prior / prior.max() if popularity and prior.max() > 0 else torch.zeros(len(items))
        self._lock = threading.Lock()

    @classmethod
    def for_data(cls, data: str | Path, catalogue: Catalogue, encoder_dir: str | Path | None = None,
                 **kwargs) -> "CandidateRetriever":
        """A retriever whose popularity prior counts the titles the recommenders of ``data``'s
        train split named (no prior when the folder has no train split)."""
        from collections import Counter

        from interplay.backends.default_model import cache_dir
        from interplay.data.build import read_records

        counts: Counter = Counter()
        if (Path(data) / "train.jsonl").exists():
            for rec in read_records(data, "train"):
                for t in rec.turns:
                    if t.role is Role.RECOMMENDER:
                        counts.update(it.title for x in t.marked_titles if (it := catalogue.resolve(x)))
        return cls(encoder_dir or cache_dir() / "matchscore", catalogue, popularity=dict(counts), **kwargs)

    def query_text(self, history: list[HistoryTurn]) -> str:
        """What the user has said: the text of their last ``turns`` turns, titles included."""
        said = [h.text for h in history if h.role is Role.USER][-self.turns:]
        return " ".join(said)

    def _embed(self, text: str):
        import torch

        enc = self.tokenizer([text], truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            q = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
            if self.space == "item":
                q = torch.nn.functional.normalize(self.encoder(q), dim=-1)
        return q[0]

    def retrieve(self, history: list[HistoryTurn], k: int) -> list[str]:
        """The ``k`` catalogue titles most similar to what the user said, best first, leaving out
        titles already named in the dialogue; none before the user has said anything."""
        text = self.query_text(history)
        if not text.strip() or k <= 0:
            return []
        named = {it.title for h in history for t in h.titles if (it := self.catalogue.resolve(t)) is not None}
        import torch

        with self._lock:
            scores = self.matrix @ self._embed(text) + self.prior
        order = torch.argsort(scores, descending=True)
        out = []
        for i in order.tolist():
            if self.titles[i] not in named:
                out.append(self.titles[i])
                if len(out) == k:
                    break
        return out


def with_candidates(history: list[HistoryTurn], retriever: CandidateRetriever, k: int) -> list[HistoryTurn]:
    """``history`` with each recommender turn's ``candidates``: what a recommender run with ``k``
    candidates was shown before it (retrieved from the turns before it)."""
    return [h.model_copy(update={"candidates": retriever.retrieve(history[:i], k)}) if h.role is Role.RECOMMENDER
            else h for i, h in enumerate(history)]


def strip_candidates(history: list[HistoryTurn]) -> list[HistoryTurn]:
    """``history`` without candidates (what the user, or a recommender run without them, sees)."""
    return [h.model_copy(update={"candidates": []}) if h.candidates else h for h in history]


def candidates_text(titles: list[str]) -> str:
    """``Candidates: A; B; C`` (the line a recommender's prompt shows)."""
    return "Candidates: " + "; ".join(titles)
