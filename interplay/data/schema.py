"""The one record schema every loader produces; nothing downstream reads source formats."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from interplay.episode import EpisodeSpec, HistoryTurn, Persona, SpokenTurn, Target
from interplay.protocol import Action, Role, Turn, check_turn

Provenance = Literal["review", "catalogue", "source"]


class RecordTurn(SpokenTurn):
    """One turn: consecutive messages of one speaker, titles marked with ``<movie_title>``
    (``titles``: the source's own list, which may differ from the marked ones)."""

    titles: list[str] = Field(default_factory=list)
    meta: dict = Field(default_factory=dict)

    def to_history(self) -> HistoryTurn:
        """The turn as agents see it in a history."""
        return HistoryTurn(role=self.role, action=self.action, text=self.text)

    @model_validator(mode="after")
    def _follows_protocol(self) -> "RecordTurn":
        """The turn's wire form must parse: allowed action, balanced title markup, no frame tags."""
        check_turn(Turn(self.action, self.text), self.role)
        return self


class Outcome(BaseModel):
    """How the dialogue ended: the accepted item (title) if any, items rejected on the way."""

    model_config = ConfigDict(extra="forbid")
    accepted_item: str | None = None
    rejected_items: list[str] = Field(default_factory=list)


class DialogueRecord(BaseModel):
    """A dialogue with the persona / target-attribute / action structure the simulators use.

    ``target`` is ``None`` when the source names no item the user would accept (e.g. a rejected
    INSPIRED dialogue); such records serve evaluation, not simulation. ``provenance`` says where
    the persona texts and the attribute text come from: ``review`` (real review text),
    ``catalogue`` (built from genres/tags/keywords) or ``source`` (the data set's own text).
    """

    model_config = ConfigDict(extra="forbid")
    id: str
    source: str
    split: str
    persona: Persona
    target: Target | None
    turns: list[RecordTurn]
    outcome: Outcome = Field(default_factory=Outcome)
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    meta: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _acceptance_is_final(self) -> "DialogueRecord":
        accepts = [i for i, t in enumerate(self.turns) if t.action is Action.ACCEPT]
        if len(accepts) > 1:
            raise ValueError(f"turns {accepts} are all 'accept'; a record has at most one")
        if accepts:
            last_user = max(i for i, t in enumerate(self.turns) if t.role is Role.USER)
            if accepts[0] != last_user:
                raise ValueError(f"user turn {last_user} comes after the acceptance at turn {accepts[0]}")
            if self.outcome.accepted_item is None:
                raise ValueError("an 'accept' turn but no outcome.accepted_item")
        elif self.outcome.accepted_item is not None:
            raise ValueError("outcome.accepted_item is set but no user turn is 'accept'")
        return self

    def episode_spec(self) -> EpisodeSpec:
        """The simulation's view of this record (persona + target); needs a target."""
        if self.target is None:
            raise ValueError(f"record {self.id} has no target")
        return EpisodeSpec(record_id=self.id, source=self.source, persona=self.persona, target=self.target)
