"""Evaluation tasks built from dialogue records: replay episodes and single-turn prompts.

Each task carries the view its agent gets (built by the same functions the environment uses, so
the user never sees the target title) and the gold history it answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from interplay.candidates import CandidateRetriever, with_candidates
from interplay.catalogue import Catalogue
from interplay.data.schema import DialogueRecord
from interplay.grounding import ground_history
from interplay.episode import (
    EpisodeSpec,
    HistoryTurn,
    Observation,
    RecommenderView,
    TargetLeakError,
    UserView,
    build_recommender_view,
    build_user_view,
)
from interplay.protocol import Action, Role


@dataclass
class ReplayTask:
    """One replay episode: the user under test against the record's recommender turns."""

    episode_id: str
    record: DialogueRecord
    spec: EpisodeSpec
    script: list[HistoryTurn]
    first_speaker: Role
    max_turns: int


@dataclass
class TurnTask:
    """One single-turn prompt: ``role`` answers ``observation`` (a gold history) with ``view``."""

    task_id: str
    record_id: str
    role: Role
    view: UserView | RecommenderView
    observation: Observation
    reference: str | None = None  # the gold reply's text
    reference_action: str | None = None
    target: str | None = None
    extra: dict = field(default_factory=dict)


def titles_of(turn) -> list[str]:
    """The titles marked in a turn's text (what the env sees, whatever a loader stored beside it)."""
    return turn.marked_titles


def _grounded(turns: list[HistoryTurn], grounding: Catalogue | None, record: DialogueRecord) -> list[HistoryTurn]:
    """``turns`` with the facts of each recommended item, looked up by the ids the record resolved."""
    if grounding is None:
        return turns
    return ground_history(turns, grounding, record.target, resolve=record_resolver(record, grounding))


def record_resolver(record: DialogueRecord, catalogue: Catalogue):
    """Title -> catalogue item by the record's own resolution (None for items the catalogue lacks)."""
    def resolve(title: str):
        ref = record.items.get(title)
        return catalogue.resolve(title) if ref is None else catalogue.get(ref.item_id)
    return resolve


def history(record: DialogueRecord) -> list[HistoryTurn]:
    return [t.to_history() for t in record.turns]


def _user_view(record: DialogueRecord, skipped: Counter, episode_id: str | None = None) -> UserView | None:
    if record.target is None:
        skipped["no target (the user view needs the target's attributes)"] += 1
        return None
    try:
        return build_user_view(episode_id or record.id, record.episode_spec())
    except TargetLeakError:
        skipped["the user view would leak the target"] += 1
        return None


def replay_tasks(records: list[DialogueRecord]) -> tuple[list[ReplayTask], Counter]:
    """A replay episode per record with a target and a recommender turn. The episode runs until
    the user has answered the last recorded recommender turn (or accepts earlier)."""
    tasks, skipped = [], Counter()
    for r in records:
        if _user_view(r, skipped) is None:
            continue
        rec_turns = [i for i, t in enumerate(r.turns) if t.role is Role.RECOMMENDER]
        if not rec_turns:
            skipped["no recommender turn"] += 1
            continue
        tasks.append(ReplayTask(f"replay-{r.id}", r, r.episode_spec(), history(r), r.turns[0].role,
                                max_turns=rec_turns[-1] + 2))
    return tasks, skipped


def user_turn_tasks(records: list[DialogueRecord], grounding: Catalogue | None = None) -> tuple[list[TurnTask], Counter]:
    """Every user turn of every record with a target, answered from the gold history before it
    (``grounding``: with the catalogue facts of recommended items, as a grounded run shows them)."""
    tasks, skipped = [], Counter()
    for r in records:
        view = _user_view(r, skipped)
        if view is None:
            continue
        gold = _grounded(history(r), grounding, r)
        for i, t in enumerate(r.turns):
            if t.role is Role.USER:
                tasks.append(TurnTask(f"user-{r.id}-{i}", r.id, Role.USER, view,
                                      Observation(history=gold[:i], turn_index=i), t.text, t.action.value,
                                      r.target.title))
    return tasks, skipped


def recommender_turn_tasks(records: list[DialogueRecord], with_persona: bool = False,
                           force_recommend: bool = False, rank_items: int = 0, rank_beam: int = 0,
                           candidates: tuple[CandidateRetriever, int] | None = None) -> tuple[list[TurnTask], Counter]:
    """At the first recorded turn recommending the target, the recommender answers the gold history
    before it (the turn Recall@1 and MatchScore are measured at). ``force_recommend`` narrows that
    turn to ``recommend`` (as the paper generates a recommendation where the ground truth gave
    one); agents decoding under the turn grammar honour it. Each task asks for the agent's top
    ``rank_items`` items (Recall@10/50; exact, or by a beam of ``rank_beam`` prefixes). ``candidates`` (retriever, k): the recommender is shown
    k retrieved catalogue items at that turn, and was at each of its earlier turns."""
    tasks, skipped = [], Counter()
    for r in records:
        if r.target is None:
            skipped["no target"] += 1
            continue
        k = next((i for i, t in enumerate(r.turns) if t.role is Role.RECOMMENDER
                  and any(r.item_id(x) == r.target.item_id for x in titles_of(t))), None)
        if k is None:
            skipped["the target is never recommended in the record"] += 1
            continue
        view = build_recommender_view(r.id, r.episode_spec(), with_persona=with_persona)
        gold, shown = history(r)[:k], []
        if candidates is not None:
            gold, shown = with_candidates(gold, *candidates), candidates[0].retrieve(gold, candidates[1])
        tasks.append(TurnTask(f"rec-{r.id}-{k}", r.id, Role.RECOMMENDER, view,
                              Observation(history=gold, turn_index=k, rank_items=rank_items, rank_beam=rank_beam,
                                          candidates=shown,
                                          allowed_actions=frozenset({Action.RECOMMEND}) if force_recommend else None),
                              r.turns[k].text,
                              r.turns[k].action.value, r.target.title,
                              extra={"target_id": r.target.item_id, **({"candidates": shown} if candidates else {})}))
    return tasks, skipped


def human_decision_tasks(records: list[DialogueRecord], grounding: Catalogue | None = None
                         ) -> tuple[list[TurnTask], Counter]:
    """The user's reply right after the recommender turn that first names each item a person
    judged (``record.decisions``: the seeker's form in ReDial, the outcome and the reactions in
    INSPIRED), the observation being the real dialogue up to that turn (``whole_dialogue``: turns
    after the acceptance included). Items the person did not say about are counted per slice in
    the skipped counter, not judged. A record without a target gives a view with the persona and
    no target attributes. Each task's ``extra`` carries the item and its id, the human's verdict,
    the slice (set by provenance at build time), ``seen``, and where the verdict came from."""
    tasks, skipped = [], Counter()
    for r in records:
        for d in r.decisions:
            if d.accept is None:
                skipped[f"the person did not say ({d.slice})"] += 1
        judged = [d for d in r.decisions if d.accept is not None]
        if not judged:
            skipped["no human verdict on any recommendation"] += 1
            continue
        if r.target is None:  # e.g. a rejected INSPIRED dialogue: the user judges from the persona alone
            view = UserView(episode_id=r.id, persona=r.persona, target_attributes=[], target_attribute_text="")
        else:
            view = _user_view(r, skipped)
            if view is None:
                continue
        gold = _grounded([t.to_history() for t in r.whole_dialogue], grounding, r)
        for j, d in enumerate(judged):
            ref = r.items.get(d.title)
            facts = grounding is not None and ref is not None and ref.in_catalogue and \
                bool(grounding[ref.item_id].attributes)
            tasks.append(TurnTask(f"human-{r.id}-{d.turn:03d}-{j}", r.id, Role.USER, view,
                                  Observation(history=gold[: d.turn + 1], turn_index=d.turn + 1),
                                  target=r.target.title if r.target else None,
                                  extra={"item": d.title, "item_id": d.item_id,
                                         "target_id": r.target.item_id if r.target else None,
                                         "human_accept": d.accept, "has_target": r.target is not None,
                                         "slice": d.slice, "seen": d.seen, "verdict": d.origin,
                                         **({"item_facts": facts} if grounding is not None else {})}))
    return tasks, skipped
