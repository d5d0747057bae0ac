"""The replay recommender: plays a recorded dialogue's recommender turns, in order, verbatim."""

from __future__ import annotations

from interplay.agent import RecommenderAgent
from interplay.episode import HistoryTurn, Observation
from interplay.protocol import Role, Turn


class ReplayRecommender(RecommenderAgent):
    """Says the recorded recommender turns one after the other, whatever the user answers.

    Used by the replay evaluation of user agents: the user under test reacts to the recommendations
    the human recommender actually made. Built per episode from the record's turns.
    """

    def __init__(self, script: list[HistoryTurn], **kwargs):
        super().__init__(**kwargs)
        self.script = [t for t in script if t.role is Role.RECOMMENDER]

    def act(self, observation: Observation) -> Turn:
        said = sum(1 for t in observation.history if t.role is Role.RECOMMENDER)
        if said >= len(self.script):
            raise RuntimeError(f"the recorded dialogue has only {len(self.script)} recommender turns")
        turn = self.script[said]
        return Turn(turn.action, turn.text, meta={"replayed": True})
