"""Agreement of an agent's accept/reject decisions with the human's (the real-human view)."""

from __future__ import annotations


def decision_agreement(human: list[int], agent: list[int]) -> dict:
    """Accuracy, balanced accuracy (mean of the per-class recalls) and the confusion matrix
    (rows: human reject / accept; columns: agent reject / accept) of binary accept decisions,
    beside the majority-class baseline (always predicting the humans' more frequent decision)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

    if len(human) != len(agent):
        raise ValueError(f"{len(human)} human decisions but {len(agent)} agent decisions")
    if not human:
        return {"n": 0}
    majority = int(sum(human) * 2 >= len(human))
    base = [majority] * len(human)
    two_classes = len(set(human)) == 2
    return {
        "n": len(human), "human_accepts": sum(human), "human_rejects": len(human) - sum(human),
        "agent_accepts": sum(agent),
        "accuracy": accuracy_score(human, agent),
        "balanced_accuracy": balanced_accuracy_score(human, agent) if two_classes else None,
        "confusion": confusion_matrix(human, agent, labels=[0, 1]).tolist(),
        "majority_class": "accept" if majority else "reject",
        "majority_accuracy": accuracy_score(human, base),
        "majority_balanced_accuracy": balanced_accuracy_score(human, base) if two_classes else None,
    }
