"""Decision examples: short copies of a record centred on each recommendation the user answers.

Measured on ReDial (one epoch, 500 dialogues, 63 optimizer steps): a UserSim trained on whole
dialogues barely separates its P(accept) for the target from other recommended items even on its
own training records (ROC AUC 0.69), although the labels separate them (388 of 394 target
recommendations are accepted, 71 of 318 others). The decision is a few tokens among the ~700 of a
dialogue window. A decision example is the record cut to the user's turn before a recommendation
(context), the recommendation (with its grounded facts once serialised) and the user's answer: a
short window that spends the training tokens on the decision. The copies are training data
only: valid and test stay whole.
"""

from __future__ import annotations

from interplay.data.schema import DialogueRecord
from interplay.protocol import Action, Role


def answered_recommendations(record: DialogueRecord) -> list[int]:
    """Indices of the record's recommender turns that recommend titles and are answered by the user."""
    turns = record.turns
    return [k for k, t in enumerate(turns[:-1]) if t.role is Role.RECOMMENDER and t.action is Action.RECOMMEND
            and t.titles and turns[k + 1].role is Role.USER]


def decision_examples(records: list[DialogueRecord], copies: int = 1) -> list[DialogueRecord]:
    """For each record with a target and each recommendation the user answers, ``copies`` records
    (ids ``RECORD#dec-K`` or ``RECORD#dec-K.C``) holding the turn before the recommendation, the
    recommendation and the user's answer."""
    if copies < 0:
        raise ValueError(f"decision example copies {copies} is negative")
    out = []
    for r in records:
        if r.target is None or not copies:
            continue
        for k in answered_recommendations(r):
            turns = r.turns[max(0, k - 1): k + 2]
            for c in range(copies):
                suffix = f"#dec-{k}" if copies == 1 else f"#dec-{k}.{c}"
                out.append(r.model_copy(update={"id": r.id + suffix, "turns": turns,
                                                "meta": {**r.meta, "decision_example_of": r.id}}))
    return out
