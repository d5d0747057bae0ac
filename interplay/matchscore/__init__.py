"""MatchScore: cosine similarity of item embeddings from a text encoder trained with BPR."""

from interplay.matchscore.encoder import ItemEncoder, item_text
from interplay.matchscore.scorer import MatchScorer

__all__ = ["ItemEncoder", "MatchScorer", "item_text"]
