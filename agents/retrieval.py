"""The retrieval baseline: recommend the top catalogue item retrieved from what the user said.

It is the recommender-candidates retriever (:mod:`interplay.candidates`: the user's words in
MiniLM space against the items' texts, plus the train split's popularity prior) used alone, so it
is the floor a RecSim trained with ``--recommender-candidates`` must beat: the model adds value
only if it picks better among the candidates than their order does.
"""

from __future__ import annotations

import threading
from pathlib import Path

from agents.popularity import RANKED_IN_LOG, fallback_action, popularity_ranking
from interplay.agent import RecommenderAgent
from interplay.candidates import CandidateRetriever
from interplay.catalogue import Catalogue
from interplay.episode import Observation
from interplay.protocol import Action, Turn, mark_title

_RETRIEVERS: dict[tuple[str, str], CandidateRetriever] = {}
_LOCK = threading.Lock()


def shared_retriever(data: str, catalogue: Catalogue) -> CandidateRetriever:
    """One retriever per (data folder, catalogue) in this process (the encoders load once)."""
    key = (str(Path(data).resolve()), catalogue.key)
    with _LOCK:
        if key not in _RETRIEVERS:
            _RETRIEVERS[key] = CandidateRetriever.for_data(data, catalogue)
        return _RETRIEVERS[key]


class RetrievalRecommender(RecommenderAgent):
    """Recommends the first of the catalogue items retrieved from the user's words (``retrieval:DATA``;
    ``DATA``'s train split gives the popularity prior). Before the user has said anything it inquires
    (or, when the turn must recommend, names the most popular item)."""

    def __init__(self, data: str, catalogue: Catalogue | None = None, seed: int = 0,
                 retriever: CandidateRetriever | None = None):
        super().__init__(catalogue, seed)
        if catalogue is None or not len(catalogue):
            raise ValueError("the retrieval recommender needs a catalogue to retrieve from")
        self.data = data
        self.retriever = retriever or shared_retriever(data, catalogue)

    def act(self, observation: Observation) -> Turn:
        ranked = self.retriever.retrieve(observation.history, RANKED_IN_LOG)
        allowed = observation.legal_actions(self.role)
        if not ranked and allowed == {Action.RECOMMEND}:  # asked to recommend before the user said anything
            mentioned = {t.lower() for h in observation.history for t in h.titles}
            ranked = [t for t in popularity_ranking(str(Path(self.data).resolve()))
                      if t.lower() not in mentioned][:RANKED_IN_LOG]
        if not ranked or Action.RECOMMEND not in allowed:
            action = fallback_action(allowed - ({Action.RECOMMEND} if not ranked else set()))
            return Turn(action=action, text="What kind of movie are you in the mood for?", meta={"ranked_items": ranked})
        return Turn(action=Action.RECOMMEND, text=f"You might like {mark_title(ranked[0])}.",
                    meta={"ranked_items": ranked})
