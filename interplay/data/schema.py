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


class ItemRef(BaseModel):
    """A title as the source spells it and the item it names, resolved once when the record is
    built: a catalogue id (``ml:…``), or a source-scoped id (``redial:<movieId>``,
    ``inspired:<normalised title>``) when the catalogue lacks the item (``in_catalogue`` False)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str
    item_id: str
    in_catalogue: bool


#: where a judged item stands (by provenance, never by title): the dialogue's target; another item
#: the seeker said they had not seen / had seen / did not say; any item of a dialogue without a target
DecisionSlice = Literal["target", "other-unseen", "other-seen", "other-seen-unknown", "no-target"]
DECISION_SLICES: tuple[str, ...] = ("target", "other-unseen", "other-seen", "other-seen-unknown", "no-target")


class HumanDecision(BaseModel):
    """A person's verdict on one item the recommender suggested, judged at ``turn``: the index, in
    the whole dialogue (``turns`` then ``tail``), of the recommender turn that first names it.
    ``accept``: 1 liked / accepted, 0 not, None the person did not say (kept, counted, not judged).
    ``seen``: 1 / 0 / None (unknown). ``origin``: the seeker's form (ReDial), the dialogue's
    outcome, or a reaction read from the seeker's next turn (INSPIRED)."""

    model_config = ConfigDict(extra="forbid")
    item_id: str
    title: str
    turn: int
    accept: int | None
    seen: int | None = None
    slice: DecisionSlice
    origin: Literal["form", "outcome", "reaction"]


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
    #: every title the record names (turns, tail, outcome, decisions), source spelling -> item
    items: dict[str, ItemRef] = Field(default_factory=dict)
    #: the real dialogue after the acceptance, where ``turns`` stops (decisions read it; simulation
    #: and training do not)
    tail: list[RecordTurn] = Field(default_factory=list)
    #: every human verdict on a suggested item the source records (see :class:`HumanDecision`)
    decisions: list[HumanDecision] = Field(default_factory=list)

    def item_id(self, title: str | None) -> str | None:
        """The id the record resolved ``title`` (a spelling it contains) to; None when it names none."""
        ref = self.items.get(title) if title is not None else None
        return ref.item_id if ref is not None else None

    @property
    def whole_dialogue(self) -> list[RecordTurn]:
        """The turns then the tail: the dialogue as the people had it."""
        return [*self.turns, *self.tail]

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
        return EpisodeSpec(record_id=self.id, source=self.source, persona=self.persona, target=self.target,
                           item_ids={t: ref.item_id for t, ref in self.items.items()})
