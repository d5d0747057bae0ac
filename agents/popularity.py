"""The popularity baseline: the floor a learned recommender must beat on Recall@k."""

from __future__ import annotations

import threading
from collections import Counter
from functools import lru_cache
from pathlib import Path

from interplay.agent import RecommenderAgent
from interplay.episode import Observation
from interplay.protocol import Action, Role, Turn, mark_title

RANKED_IN_LOG = 50  # items of a ranking kept in the turn's meta (Recall@k up to 50)
_LOAD_LOCK = threading.Lock()


def fallback_action(allowed: frozenset[Action]) -> Action:
    """The action a recommender that cannot recommend now takes: inquire, else greet, else comment."""
    return next((a for a in (Action.INQUIRE, Action.GREETING, Action.FEEDBACK, Action.RECOMMEND) if a in allowed),
                Action.INQUIRE)


class PopularityRecommender(RecommenderAgent):
    """Recommends the items most often recommended in a data folder's train split, not yet
    mentioned in the dialogue (the baseline a learned recommender must beat on Recall@k)."""

    def __init__(self, data: str, catalogue=None, seed: int = 0):
        super().__init__(catalogue, seed)
        self.ranking = popularity_ranking(str(Path(data).resolve()))

    def act(self, observation: Observation) -> Turn:
        mentioned = {t.lower() for h in observation.history for t in h.titles}
        ranked = [t for t in self.ranking if t.lower() not in mentioned][:RANKED_IN_LOG]
        allowed = observation.legal_actions(self.role)
        if not ranked and allowed == {Action.RECOMMEND}:  # asked to recommend, every title mentioned:
            ranked = self.ranking[:RANKED_IN_LOG]  # name the most popular again
        if not ranked or Action.RECOMMEND not in allowed:
            # every popular title was mentioned, or the caller narrowed the turn to other actions
            action = fallback_action(allowed - ({Action.RECOMMEND} if not ranked else set()))
            return Turn(action=action, text="What kind of movie are you in the mood for?", meta={"ranked_items": ranked})
        return Turn(action=Action.RECOMMEND, text=f"You might like {mark_title(ranked[0])}.",
                    meta={"ranked_items": ranked})


@lru_cache(maxsize=4)
def _popularity_ranking(data: str) -> list[str]:
    from interplay.data.build import read_records

    counts: Counter = Counter()
    for rec in read_records(data, "train"):
        for t in rec.turns:
            if t.role is Role.RECOMMENDER:  # titles as marked in the text (the record's own list may be empty)
                counts.update(t.marked_titles or t.titles)
    return [t for t, _ in counts.most_common()]


def popularity_ranking(data: str) -> list[str]:
    """Titles by how often the train split's recommenders mention them (computed once per process)."""
    with _LOAD_LOCK:
        return _popularity_ranking(data)
