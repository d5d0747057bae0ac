"""The Agent API: subclass :class:`Agent`, set ``role``, implement ``act``.

An agent instance lives for one episode: the environment calls ``reset`` with the role's view
(a :class:`~interplay.episode.UserView` or :class:`~interplay.episode.RecommenderView`), then
``act`` once per turn of its role. ``act_batch`` answers several observations of the same episode
view at once (single-turn evaluation uses it); LLM agents override it to batch generation.
"""

from __future__ import annotations

from typing import ClassVar

from interplay.catalogue import Catalogue
from interplay.episode import Observation, RecommenderView, UserView
from interplay.protocol import ProtocolError, Role, Turn


class Agent:
    """Base class of users and recommenders."""

    role: ClassVar[Role]

    def __init__(self, catalogue: Catalogue | None = None, seed: int = 0):
        self.catalogue = catalogue
        self.seed = seed
        self.view: UserView | RecommenderView | None = None

    def reset(self, view: UserView | RecommenderView) -> None:
        """Start an episode with what this role may know."""
        expected = UserView if self.role is Role.USER else RecommenderView
        if not isinstance(view, expected):
            raise TypeError(f"{type(self).__name__} ({self.role.value}) got a {type(view).__name__}")
        self.view = view

    def act(self, observation: Observation) -> Turn:
        """The agent's next turn given the dialogue so far.

        An agent whose output does not follow the protocol raises :class:`ProtocolError`; the
        environment then retries it or ends the episode.
        """
        raise NotImplementedError

    def action_probabilities(self, observation: Observation) -> dict[str, float] | None:
        """The probability of each action this agent may take at ``observation``, read without
        generating a turn (LLM agents score the action tokens), or ``None`` when the agent
        cannot tell; evaluations then fall back to ``act``."""
        return None

    def turn_likelihood(self, observation: Observation, turn: Turn) -> tuple[float, int] | None:
        """The log-likelihood of ``turn`` (as this agent would write it) after ``observation``, and
        its number of tokens; ``None`` when the agent has no model to ask (the fidelity
        scorecard's likelihood of real user turns)."""
        return None

    def act_batch(self, observations: list[Observation]) -> list[Turn | ProtocolError]:
        """One result per observation, a :class:`ProtocolError` standing for an unparseable
        output; override to batch model calls."""
        results: list[Turn | ProtocolError] = []
        for obs in observations:
            try:
                results.append(self.act(obs))
            except ProtocolError as exc:
                results.append(exc)
        return results


class UserAgent(Agent):
    """Base class of user agents (``role = Role.USER``)."""

    role = Role.USER
    view: UserView


class RecommenderAgent(Agent):
    """Base class of recommender agents (``role = Role.RECOMMENDER``)."""

    role = Role.RECOMMENDER
    view: RecommenderView
