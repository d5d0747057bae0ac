"""MatchScore of a recommended title against the ground-truth item."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from interplay.catalogue import Catalogue, Item
from interplay.matchscore.encoder import ITEM_VECTORS_FILE, ItemEncoder, item_text


@dataclass(frozen=True)
class Match:
    """MatchScore of one recommendation; ``matched`` False when the recommended title is not in the
    catalogue (the score is then 0 and the case is counted apart); ``score`` None when the ground
    truth itself is not in the catalogue (nothing to compare with: left out of the mean, counted)."""

    score: float | None
    matched: bool
    item_id: str | None = None


class MatchScorer:
    """Cosine similarity of item embeddings from a trained :class:`ItemEncoder`.

    Items of the training catalogue use the vectors saved at training; any other catalogue item
    is encoded from its text on first use. Titles are found exactly, else fuzzy-matched.
    """

    def __init__(self, encoder_dir: str | Path, catalogue: Catalogue):
        self.encoder, self.config = ItemEncoder.load(encoder_dir)
        self.catalogue = catalogue
        saved = torch.load(Path(encoder_dir) / ITEM_VECTORS_FILE, map_location="cpu", weights_only=True)
        self._vectors: dict[str, torch.Tensor] = dict(zip(saved["item_ids"], saved["vectors"]))

    def item(self, title: str) -> Item | None:
        return self.catalogue.resolve(title)

    def vector(self, item: Item) -> torch.Tensor:
        if item.item_id not in self._vectors:
            from interplay.text_encoder import mean_pooled_embeddings

            base = mean_pooled_embeddings([item_text(item)], self.config.get("text_encoder"))
            with torch.no_grad():
                self._vectors[item.item_id] = torch.nn.functional.normalize(self.encoder(base), dim=-1)[0]
        return self._vectors[item.item_id]

    def similarity(self, a: Item, b: Item) -> float:
        return float(self.vector(a) @ self.vector(b))

    def score(self, recommended: str | None, target: str, target_id: str | None = None) -> Match:
        """MatchScore of ``recommended`` (a title, or None for no recommendation) vs ``target``
        (found by ``target_id`` when the catalogue has it, else by title)."""
        target_item = None
        if target_id is not None:
            try:
                target_item = self.catalogue[target_id]
            except KeyError:
                pass
        target_item = target_item or self.item(target)
        rec_item = self.item(recommended) if recommended else None
        if target_item is None:
            return Match(None, rec_item is not None, rec_item.item_id if rec_item else None)
        if rec_item is None:
            return Match(0.0, False)
        return Match(self.similarity(rec_item, target_item), True, rec_item.item_id)
