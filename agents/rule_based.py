"""Rule-based user and recommender: cheap, transparent baselines that need no model."""

from __future__ import annotations

import re

from interplay.agent import RecommenderAgent, UserAgent
from interplay.catalogue import Catalogue, Item
from interplay.episode import Observation, UserView
from interplay.protocol import Action, Role, Turn, mark_title


def attribute_overlap(item: Item, wanted: list[str]) -> float:
    """Share of the wanted attributes the item has (case-insensitive); 0 when none are wanted."""
    if not wanted:
        return 0.0
    have = {a.lower() for a in item.attributes}
    return sum(1 for a in wanted if a.lower() in have) / len(wanted)


def _honour(observation: Observation, role: Role, turn: Turn, alternatives: dict[Action, object]) -> Turn:
    """``turn`` when its action is allowed at ``observation``; otherwise the first allowed action
    among ``alternatives`` (action -> a function making that turn), for a caller that narrows the
    turn (``observation.allowed_actions``)."""
    allowed = observation.legal_actions(role)
    if turn.action in allowed:
        return turn
    for action, make in alternatives.items():
        if action in allowed:
            return make()
    raise ValueError(f"none of the allowed actions {sorted(a.value for a in allowed)} is one this agent can take")


def _require(catalogue: Catalogue | None, who: str) -> Catalogue:
    if catalogue is None:
        raise ValueError(f"{who} needs the item catalogue")
    return catalogue


class RuleBasedUser(UserAgent):
    """Discloses its target attributes a few at a time; accepts a recommended item whose catalogue
    attributes cover at least ``threshold`` of the target attributes, otherwise gives feedback."""

    def __init__(self, catalogue: Catalogue | None = None, seed: int = 0, threshold: float = 0.6,
                 per_turn: int = 1):
        super().__init__(catalogue, seed)
        self.threshold = threshold
        self.per_turn = per_turn

    def reset(self, view: UserView) -> None:  # type: ignore[override]
        super().reset(view)
        self._disclosed = 0

    def _disclose(self) -> list[str]:
        attrs = self.view.target_attributes
        new = attrs[self._disclosed : self._disclosed + self.per_turn]
        self._disclosed += len(new)
        return new

    def act(self, observation: Observation) -> Turn:
        return _honour(observation, self.role, self._act(observation), {
            Action.FEEDBACK: lambda: Turn(Action.FEEDBACK, "Hmm, let me think about what I want."),
            Action.DISCLOSE_GOAL: lambda: Turn(Action.DISCLOSE_GOAL, "I'm looking for a movie with "
                                               + " and ".join(self.view.target_attributes[:2] or ["a good story"]) + "."),
            Action.ACCEPT: lambda: Turn(Action.ACCEPT, "Alright, I'll watch it."),
            Action.INQUIRE: lambda: Turn(Action.INQUIRE, "What is it about?"),
            Action.GREETING: lambda: Turn(Action.GREETING, "Hi!"),
        })

    def _act(self, observation: Observation) -> Turn:
        last = observation.last
        if last is not None and last.role is Role.RECOMMENDER and last.action is Action.RECOMMEND:
            return self._react(last.titles)
        new = self._disclose()
        if not new:
            return Turn(Action.FEEDBACK, "I told you what I like: " + ", ".join(self.view.target_attributes) + ".")
        opener = "Hi! " if last is None else ""
        return Turn(Action.DISCLOSE_GOAL, f"{opener}I'm looking for a movie with {' and '.join(new)}.")

    def _best(self, titles: list[str]) -> tuple[float, str] | None:
        """The recommended catalogue item covering most target attributes, with its coverage."""
        catalogue = _require(self.catalogue, "RuleBasedUser")
        best: tuple[float, str] | None = None
        for title in titles:
            item = catalogue.resolve(title)
            if item is not None:
                score = attribute_overlap(item, self.view.target_attributes)
                if best is None or score > best[0]:
                    best = (score, item.title)
        return best

    def action_probabilities(self, observation: Observation) -> dict[str, float] | None:
        """Right after a recommendation: ``accept`` weighted by the best recommended item's
        coverage of the target attributes, ``feedback`` by the rest (a score, not a calibrated
        probability; at ``accept_threshold == threshold`` the decision is the one ``act`` takes).
        Elsewhere the action ``act`` would take, with probability 1 (without taking it)."""
        last = observation.last
        if last is None or last.role is not Role.RECOMMENDER or last.action is not Action.RECOMMEND:
            more = self._disclosed < len(self.view.target_attributes)
            return {(Action.DISCLOSE_GOAL if more else Action.FEEDBACK).value: 1.0}
        best = self._best(last.titles)
        coverage = 1.0 if self.threshold <= 0 else best[0] if best is not None else 0.0
        return {Action.ACCEPT.value: coverage, Action.FEEDBACK.value: 1.0 - coverage}

    def _react(self, titles: list[str]) -> Turn:
        best = self._best(titles)
        if self.threshold <= 0 and best is None:  # a yes-sayer accepts even what it cannot look up
            return Turn(Action.ACCEPT, "Sure, I'll watch it!")
        if best is not None and best[0] >= self.threshold:
            return Turn(Action.ACCEPT, f"That sounds perfect, I'll watch {mark_title(best[1])}!")
        more = self._disclose()
        wish = f" I'd prefer something with {' and '.join(more)}." if more else " It doesn't fit what I want."
        named = f"{mark_title(best[1])} is not really for me." if best else "I don't know that one."
        return Turn(Action.FEEDBACK, named + wish)


class RuleBasedRecommender(RecommenderAgent):
    """Asks until the user has named ``min_attributes`` catalogue attributes (at most
    ``max_questions`` times), then recommends the unrecommended item matching most of them."""

    def __init__(self, catalogue: Catalogue | None = None, seed: int = 0, min_attributes: int = 3,
                 max_questions: int = 2):
        super().__init__(catalogue, seed)
        self.min_attributes = min_attributes
        self.max_questions = max_questions
        self._vocab = _require(catalogue, "RuleBasedRecommender").vocabulary()

    def _mentioned(self, observation: Observation) -> list[str]:
        """Catalogue attributes the user named, longest first ("science fiction" before "fiction")."""
        words = re.findall(r"[a-z0-9'-]+", " ".join(t.text.lower() for t in observation.history if t.role is Role.USER))
        found: list[str] = []
        used = [False] * len(words)
        for n in range(4, 0, -1):
            for i in range(len(words) - n + 1):
                phrase = " ".join(words[i : i + n])
                if not any(used[i : i + n]) and phrase in self._vocab:
                    found.append(phrase)
                    used[i : i + n] = [True] * n
        return found

    def act(self, observation: Observation) -> Turn:
        return _honour(observation, self.role, self._act(observation), {
            Action.RECOMMEND: lambda: self._recommend(observation, self._mentioned(observation)),
            Action.INQUIRE: lambda: Turn(Action.INQUIRE, "Tell me more: which genres or themes do you enjoy?"),
            Action.GREETING: lambda: Turn(Action.GREETING, "Hi! What kind of movie are you in the mood for?"),
            Action.FEEDBACK: lambda: Turn(Action.FEEDBACK, "Good to know."),
        })

    def _act(self, observation: Observation) -> Turn:
        if not any(t.role is Role.USER for t in observation.history):
            return Turn(Action.GREETING, "Hi! What kind of movie are you in the mood for?")
        wanted = self._mentioned(observation)
        asked = sum(1 for t in observation.history if t.role is Role.RECOMMENDER and t.action is Action.INQUIRE)
        if len(wanted) < self.min_attributes and asked < self.max_questions:
            return Turn(Action.INQUIRE, "Tell me more: which genres or themes do you enjoy?")
        return self._recommend(observation, wanted)

    def _recommend(self, observation: Observation, wanted: list[str]) -> Turn:
        """The unrecommended item matching most of ``wanted``; an inquiry when none is left."""
        catalogue = _require(self.catalogue, "RuleBasedRecommender")
        shown = {
            title
            for t in observation.history
            if t.role is Role.RECOMMENDER and t.action is Action.RECOMMEND
            for title in t.titles
        }
        candidates = [i for i in catalogue if i.title not in shown]
        if not candidates:
            return Turn(Action.INQUIRE, "I have run out of ideas. What else could you like?")
        best = max(candidates, key=lambda i: attribute_overlap(i, wanted))
        reasons = [a for a in best.attributes if a.lower() in wanted][:3] or list(best.attributes[:2])
        return Turn(Action.RECOMMEND, f"You may enjoy {mark_title(best.title)}: {', '.join(reasons)}.")
