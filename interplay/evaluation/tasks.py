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
from interplay.metrics.core import same_item
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


def _grounded(turns: list[HistoryTurn], grounding: Catalogue | None, target) -> list[HistoryTurn]:
    return turns if grounding is None else ground_history(turns, grounding, target)


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
        gold = _grounded(history(r), grounding, r.target)
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
                  and any(same_item(x, r.target.title) for x in titles_of(t))), None)
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
    """The user's reply right after each recorded recommendation whose human verdict is known:
    the accepted item (label 1) and the rejected items (label 0) of the record's outcome, then
    the items of the record's seeker reactions (``meta["reactions"]``, :mod:`interplay.data.reactions`:
    accept 1, reject 0) that the outcome does not judge. A record without a target (the human
    accepted nothing) gives a view with the persona and no target attributes, so its rejections
    are judged too. Each task's ``extra["verdict"]`` says where its label came from."""
    tasks, skipped = [], Counter()
    for r in records:
        labels = ([(r.outcome.accepted_item, 1, "outcome")] if r.outcome.accepted_item else []) + \
                 [(x, 0, "outcome") for x in r.outcome.rejected_items]
        for x in r.meta.get("reactions", []):
            if x["reaction"] != "none" and not any(same_item(x["item"], t) for t, _, _ in labels):
                labels.append((x["item"], int(x["reaction"] == "accept"), "reaction"))
        if not labels:
            skipped["no human verdict on any recommendation"] += 1
            continue
        if r.target is None:  # e.g. a rejected INSPIRED dialogue: the user judges from the persona alone
            view = UserView(episode_id=r.id, persona=r.persona, target_attributes=[], target_attribute_text="")
        else:
            view = _user_view(r, skipped)
            if view is None:
                continue
        gold = _grounded(history(r), grounding, r.target)
        for j, (title, label, verdict) in enumerate(labels):
            k = next((i for i, t in enumerate(r.turns) if t.role is Role.RECOMMENDER
                      and any(same_item(x, title) for x in titles_of(t))), None)
            if k is None:
                skipped["the judged item is never recommended in the record"] += 1
                continue
            tasks.append(TurnTask(f"human-{r.id}-{k}-{j}", r.id, Role.USER, view,
                                  Observation(history=gold[: k + 1], turn_index=k + 1),
                                  target=r.target.title if r.target else None,
                                  extra={"item": title, "human_accept": label, "has_target": r.target is not None,
                                         "verdict": verdict}))
    return tasks, skipped
