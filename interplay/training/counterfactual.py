"""Counterfactual negatives: recorded recommendations swapped for items that contradict the
target, answered with a rejection.

ReDial's seekers accept ~92% of the recommendations they end on, so a UserSim trained on it
learns "accept the first title". A counterfactual negative is a copy of a record cut after one
recorded recommendation whose title is replaced by a catalogue item sharing no attribute with
the target's (a different genre, other keywords), followed by the user's feedback turn rejecting
it. With grounded observations the user reads the item's facts, so the rejection is learnable
from what the user sees. The copies are training data only: valid and test stay real.
"""

from __future__ import annotations

import random
import re

from interplay.catalogue import Catalogue, Item
from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode import Target, find_target_leak
from interplay.protocol import TITLE_CLOSE, TITLE_OPEN, Action, Role, mark_title

_MARKED = re.compile(re.escape(TITLE_OPEN) + r".*?" + re.escape(TITLE_CLOSE), re.S)

#: the user's rejection, filled with up to three of the target's attributes
REJECTIONS = (
    "Hmm, that doesn't sound like what I'm after. I'd like something {wants}.",
    "I don't think that one is for me. I'm looking for something {wants}.",
    "Not really my thing. Do you have something {wants}?",
)


def contradicts(item: Item, target: Target) -> bool:
    """``item`` shares no attribute with the target (case-insensitive), has at least two
    attributes the user can read, and is not the target."""
    wanted = {a.lower() for a in target.attributes}
    own = {a.lower() for a in item.attributes}
    return item.item_id != target.item_id and len(own) >= 2 and bool(wanted) and not wanted & own


def _swap_titles(text: str, title: str) -> str:
    """The recorded recommendation with its first marked title replaced and any others unmarked
    away (one item recommended)."""
    first = True

    def sub(m: re.Match) -> str:
        nonlocal first
        if first:
            first = False
            return mark_title(title)
        return "that"

    return _MARKED.sub(sub, text)


def people_rejections(records: list[DialogueRecord], min_words: int = 3) -> list[str]:
    """What people wrote when they turned a recommendation down: each user ``feedback`` turn right
    after a recommendation of an item its seeker rejected (``record.decisions``), naming no title,
    of at least ``min_words`` words; distinct, in order of appearance."""
    out: dict[str, None] = {}
    for r in records:
        for d in r.decisions:
            if d.accept != 0 or d.turn + 1 >= len(r.turns):
                continue
            answer = r.turns[d.turn + 1]
            if (answer.role is Role.USER and answer.action is Action.FEEDBACK and not answer.marked_titles
                    and len(answer.text.split()) >= min_words):
                out.setdefault(" ".join(answer.text.split()), None)
    return list(out)


def counterfactual_negatives(records: list[DialogueRecord], catalogue: Catalogue, rate: float,
                             seed: int = 0, tries: int = 200, rejections: list[str] | None = None
                             ) -> list[DialogueRecord]:
    """For each record with a target and a recorded recommendation followed by a user turn, with
    probability ``rate``, one negative copy (id ``RECORD#neg-K``): the turns before recommendation
    turn K, that turn naming a contradicting item instead, and the user's rejection (feedback): one
    of :data:`REJECTIONS` naming the user's wishes, or, given ``rejections`` (e.g.
    :func:`people_rejections`), one of those texts that does not leak the record's target."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"counterfactual rate {rate} is not in [0, 1]")
    rng = random.Random(seed)
    pool = [it for it in catalogue if len(it.attributes) >= 2]
    out = []
    for r in records:
        if r.target is None or not r.target.attributes or rng.random() >= rate:
            continue
        spots = [k for k, t in enumerate(r.turns[:-1]) if t.role is Role.RECOMMENDER and t.action is Action.RECOMMEND
                 and t.titles and r.turns[k + 1].role is Role.USER]
        if not spots:
            continue
        k = rng.choice(spots)
        item = next((it for it in (rng.choice(pool) for _ in range(tries)) if contradicts(it, r.target)), None)
        if item is None:
            continue
        if rejections:
            rejection = rng.choice(rejections)
            if find_target_leak(rejection, r.target) is not None:
                continue
        else:
            wants = [a for a in r.target.attributes[:3] if find_target_leak(a, r.target) is None] or ["else"]
            rejection = rng.choice(REJECTIONS).format(wants=", ".join(wants))
        turns = [*r.turns[:k],
                 RecordTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                            text=_swap_titles(r.turns[k].text, item.title), titles=[item.title],
                            meta={"counterfactual": True}),
                 RecordTurn(role=Role.USER, action=Action.FEEDBACK, text=rejection, meta={"counterfactual": True})]
        out.append(r.model_copy(update={"id": f"{r.id}#neg-{k}", "turns": turns,
                                        "outcome": Outcome(rejected_items=[item.title]),
                                        "meta": {**r.meta, "counterfactual_of": r.id}}))
    return out
