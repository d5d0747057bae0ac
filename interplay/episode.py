"""What an episode is made of, what each role may see of it, and what gets logged.

The environment builds each role's view from an :class:`EpisodeSpec`; the user's view holds the
persona and the target's attributes and, by construction and by check, never the target's title
or item id.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from interplay.catalogue import normalize_title, split_year
from interplay.protocol import Action, Role, legal_actions
from interplay.protocol import marked_titles as _marked_titles


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchedItem(_Model):
    """An item the user has seen, with a short text about it (a review, or catalogue text)."""

    title: str
    text: str = ""


class Persona(_Model):
    """A general-preference summary and up to three watched items."""

    summary: str
    watched: list[WatchedItem] = Field(default_factory=list, max_length=3)


class Target(_Model):
    """The item the user is looking for. Only its attributes reach the user agent."""

    item_id: str
    title: str
    attributes: list[str] = Field(default_factory=list)
    attribute_text: str = ""


class EpisodeSpec(_Model):
    """Everything needed to start one episode."""

    record_id: str
    source: str = "demo"
    persona: Persona
    target: Target
    #: titles known before the episode, as spelt, and the item each names (a recorded dialogue's
    #: resolutions, for replays); any other title is resolved by the run's catalogue
    item_ids: dict[str, str] = Field(default_factory=dict)


class UserView(_Model):
    """What the user agent knows: persona and target attributes, no title, no item id."""

    episode_id: str
    persona: Persona
    target_attributes: list[str]
    target_attribute_text: str


class RecommenderView(_Model):
    """What the recommender knows at the start: nothing about the target; optionally the persona."""

    episode_id: str
    persona: Persona | None = None


class ItemFacts(_Model):
    """What a person knows, or would look up, about a catalogue item named in the dialogue: its
    title (with the year) and public attributes (genres, keywords, tags). Never an item id."""

    title: str
    attributes: list[str] = Field(default_factory=list)


class SpokenTurn(_Model):
    """What every parsed turn shape shares: who spoke, the action, the text with titles marked.

    The shapes: :class:`HistoryTurn` (what agents see), ``interplay.data.schema.RecordTurn`` (a
    recorded dialogue's turn) extend it; ``interplay.protocol.Turn`` (an agent's output, before the
    environment assigns the role) and ``interplay.episode_log.TurnLog`` (a logged turn, which may
    have failed to parse) have the same ``action``, ``text`` and ``titles``."""

    role: Role
    action: Action
    text: str

    @property
    def marked_titles(self) -> list[str]:
        """Item titles marked in the text, in order of appearance (what the environment sees)."""
        return _marked_titles(self.text)


class HistoryTurn(SpokenTurn):
    """A turn as the agents see it in the history. ``about``: in a grounded user's observation, the
    facts of the catalogue items this turn names (see :mod:`interplay.grounding`)."""

    about: list[ItemFacts] = Field(default_factory=list)
    #: in a recommender's observation: the candidates it was shown before this turn of its own
    candidates: list[str] = Field(default_factory=list)

    @property
    def titles(self) -> list[str]:
        """Item titles marked in the text, in order of appearance."""
        return self.marked_titles


class Observation(_Model):
    """The input of one ``act`` call: the dialogue so far and which attempt this is."""

    history: list[HistoryTurn]
    turn_index: int
    attempt: int = 0
    #: turns the episode may still have after this one under its max-turn cap (None: no cap known)
    turns_left: int | None = None
    #: the caller narrows this turn to these actions (None: every legal action), e.g. an
    #: evaluation asking for a recommendation at the turn it scores
    allowed_actions: frozenset[Action] | None = None
    #: the caller asks for the agent's top-k catalogue items at this turn in
    #: ``turn.meta["ranked_items"]`` (0: none); LLM recommenders rank every catalogue title by its
    #: likelihood at the turn's first ``<movie_title>``
    rank_items: int = Field(0, ge=0)
    #: how to rank: 0 = exact (best-first search over the title trie, minutes per turn on a CPU);
    #: B > 0 = beam search keeping B prefixes per token depth (approximate, seconds)
    rank_beam: int = Field(0, ge=0)
    #: recommender runs with candidates: catalogue titles retrieved from the conversation for this
    #: turn (interplay.candidates), best first
    candidates: list[str] = Field(default_factory=list)

    @property
    def last(self) -> HistoryTurn | None:
        return self.history[-1] if self.history else None

    def legal_actions(self, role: Role) -> frozenset[Action]:
        """The actions ``role`` may take at this turn: :func:`~interplay.protocol.legal_actions`
        given the history, narrowed by ``allowed_actions``."""
        recommended = any(t.action is Action.RECOMMEND for t in self.history)
        legal = legal_actions(role, recommended)
        return legal if self.allowed_actions is None else legal & self.allowed_actions


class TargetLeakError(ValueError):
    """A user view would reveal the target title or id."""


_STOP = frozenset(
    "a an the of and or in on at to for from with by is it its my your his her our their this that de la le "
    "part episode vol volume chapter ii iii iv v vi vii".split()
)


def _title_name(title: str) -> str:
    name = normalize_title(split_year(title)[0], keep_year=False)
    return re.sub(r"^(the|a|an) ", "", name)  # "a film like Matrix" names "The Matrix" too


def _content_tokens(text: str) -> list[str]:
    return [t for t in normalize_title(text, keep_year=False).split() if t not in _STOP and not t.isdigit()]


def find_target_leak(text: str, target: Target) -> str | None:
    """Say how ``text`` reveals the target, or ``None`` when it does not.

    Checked after normalisation (case, punctuation, a leading or moved article), as whole words:
    the title's name; any two consecutive content words of the title (a franchise name such as
    "harry potter" or "star wars"); the single content word of a one-word title ("heat"); the
    item id. Deliberately conservative: a false alarm costs an attribute, a miss leaks the answer.
    """
    norm = " " + normalize_title(text, keep_year=False) + " "
    name = _title_name(target.title)
    if len(name) >= 3 and f" {name} " in norm:
        return f"target title {target.title!r}"
    words = _content_tokens(split_year(target.title)[0])
    text_words = " " + " ".join(_content_tokens(text)) + " "
    for a, b in zip(words, words[1:]):
        if f" {a} {b} " in text_words:
            return f"title words {a!r} {b!r} of {target.title!r}"
    if len(words) == 1 and len(words[0]) >= 3 and f" {words[0]} " in text_words:
        return f"title word {words[0]!r} of {target.title!r}"
    if re.search(r"(?<![A-Za-z0-9_-])" + re.escape(target.item_id) + r"(?![A-Za-z0-9_-])", text):
        return f"target item id {target.item_id!r}"
    return None


def build_user_view(episode_id: str, spec: EpisodeSpec) -> UserView:
    """The user's view of an episode; raises :class:`TargetLeakError` if it would leak."""
    view = UserView(
        episode_id=episode_id,
        persona=spec.persona,
        target_attributes=list(spec.target.attributes),
        target_attribute_text=spec.target.attribute_text,
    )
    leak = find_target_leak(view.model_dump_json(exclude={"episode_id"}), spec.target)
    if leak:
        raise TargetLeakError(f"user view of {spec.record_id!r} would contain the {leak}")
    return view


def build_recommender_view(episode_id: str, spec: EpisodeSpec, with_persona: bool = False) -> RecommenderView:
    """The recommender's view: the persona only if the agent is a prompted baseline that gets it."""
    return RecommenderView(episode_id=episode_id, persona=spec.persona if with_persona else None)
