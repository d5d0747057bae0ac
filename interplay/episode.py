"""What an episode is made of, what each role may see of it, and what gets logged.

The environment builds each role's view from an :class:`EpisodeSpec`; the user's view holds the
persona and the target's attributes and, by construction and by check, never the target's title
or item id.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from interplay.catalogue import normalize_title, split_year
from interplay.protocol import Action, Role


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


class HistoryTurn(_Model):
    """A turn as the agents see it in the history."""

    role: Role
    action: Action
    text: str


class Observation(_Model):
    """The input of one ``act`` call: the dialogue so far and which attempt this is."""

    history: list[HistoryTurn]
    turn_index: int
    attempt: int = 0

    @property
    def last(self) -> HistoryTurn | None:
        return self.history[-1] if self.history else None


class TargetLeakError(ValueError):
    """A user view would reveal the target title or id."""


def _title_pattern(title: str) -> re.Pattern[str] | None:
    name = normalize_title(split_year(title)[0], keep_year=False)
    name = re.sub(r"^(the|a|an) ", "", name)  # "a film like Matrix" names "The Matrix" too
    if len(name) < 3:
        return None
    return re.compile(r"(?<![a-z0-9])" + re.escape(name) + r"(?![a-z0-9])")


def find_target_leak(text: str, target: Target) -> str | None:
    """Say how ``text`` reveals the target (its title or item id), or ``None`` when it does not.

    Titles are compared after normalisation (case, punctuation, a leading or moved article), as
    whole words; this is deliberately conservative.
    """
    norm = normalize_title(text, keep_year=False)
    pattern = _title_pattern(target.title)
    if pattern is not None and pattern.search(norm):
        return f"target title {target.title!r}"
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
