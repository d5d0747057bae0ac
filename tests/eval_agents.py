"""Deterministic agents for the evaluation tests (used through `py:eval_agents:...` specs)."""

from __future__ import annotations

from interplay.agent import RecommenderAgent, UserAgent
from interplay.episode import Observation
from interplay.protocol import Action, Role, Turn, mark_title


class AcceptFirstUser(UserAgent):
    """Accepts whatever is recommended to it; otherwise asks for a film."""

    def act(self, observation: Observation) -> Turn:
        last = observation.last
        if last is not None and last.role is Role.RECOMMENDER and last.action is Action.RECOMMEND:
            return Turn(Action.ACCEPT, "Great, I will watch that.")
        return Turn(Action.DISCLOSE_GOAL, "I would like a funny police movie.")


class PoliceAcademyRecommender(RecommenderAgent):
    """Always recommends Police Academy (1984), with a ranked list behind it."""

    RANKED = ["Police Academy (1984)", "Super Troopers (2001)", "American Pie (1999)"]

    def act(self, observation: Observation) -> Turn:
        return Turn(Action.RECOMMEND, f"You may enjoy {mark_title(self.RANKED[0])}.",
                    meta={"ranked_items": list(self.RANKED)})
