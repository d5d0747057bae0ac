"""Agreement of an agent's accept/reject decisions with the human's (the real-human view)."""

from __future__ import annotations


def balanced_accuracy_interval(human: list[int], agent: list[int], confidence: float = 0.95,
                               resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the balanced accuracy, items resampled in (human, agent)
    pairs. A resample holding one human class only has no balanced accuracy and is left out
    (``scipy.stats.bootstrap`` turns the whole interval into NaN then, hence numpy here). None
    with fewer than two items of either human class."""
    import numpy as np

    h, a = np.asarray(human), np.asarray(agent)
    if min(int(h.sum()), int(len(h) - h.sum())) < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, len(h), size=(resamples, len(h)))
    hh, aa = h[idx], a[idx]
    pos, neg = hh.sum(1), (1 - hh).sum(1)
    ok = (pos > 0) & (neg > 0)
    tpr = ((hh == 1) & (aa == 1)).sum(1)[ok] / pos[ok]
    tnr = ((hh == 0) & (aa == 0)).sum(1)[ok] / neg[ok]
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile((tpr + tnr) / 2, [tail, 100 - tail])
    return float(lo), float(hi)


def decision_agreement(human: list[int], agent: list[int], p_accept: list[float] | None = None,
                       clusters: list[str] | None = None) -> dict:
    """Accuracy, balanced accuracy (mean of the per-class recalls, with a 95% bootstrap
    interval) and the confusion matrix (rows: human reject / accept; columns: agent reject /
    accept) of binary accept decisions, beside the majority-class baseline (always predicting the
    humans' more frequent decision). With the agent's ``p_accept`` per item (decisions read by
    scoring): the ROC AUC, and the threshold on it with the best balanced accuracy on these items
    (choose it on a valid split, apply it to test with ``--accept-threshold``): halfway between
    the best cut's lowest accepted probability and the next lower one, so probabilities that move
    by float rounding (another batch, a reused prefix) keep their side of it. ``clusters``: each
    item's dialogue; the interval then resamples whole dialogues."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

    if len(human) != len(agent):
        raise ValueError(f"{len(human)} human decisions but {len(agent)} agent decisions")
    if not human:
        return {"n": 0}
    majority = int(sum(human) * 2 >= len(human))
    base = [majority] * len(human)
    two_classes = len(set(human)) == 2
    out = {
        "n": len(human), "human_accepts": sum(human), "human_rejects": len(human) - sum(human),
        "agent_accepts": sum(agent),
        "accuracy": accuracy_score(human, agent),
        "balanced_accuracy": balanced_accuracy_score(human, agent) if two_classes else None,
        "balanced_accuracy_ci95": (_cluster_interval(human, agent, clusters) if clusters is not None
                                   else balanced_accuracy_interval(human, agent)) if two_classes else None,
        "confusion": confusion_matrix(human, agent, labels=[0, 1]).tolist(),
        "majority_class": "accept" if majority else "reject",
        "majority_accuracy": accuracy_score(human, base),
        "majority_balanced_accuracy": balanced_accuracy_score(human, base) if two_classes else None,
    }
    if p_accept is not None and two_classes:
        if len(p_accept) != len(human):
            raise ValueError(f"{len(human)} human decisions but {len(p_accept)} probabilities")
        out["roc_auc"] = roc_auc_score(human, p_accept)
        cuts = sorted(set(p_accept))
        i = max(range(len(cuts)), key=lambda j: balanced_accuracy_score(human, [int(p >= cuts[j]) for p in p_accept]))
        best = (cuts[i] + (cuts[i - 1] if i else 0.0)) / 2
        out["best_threshold"] = best
        out["best_threshold_balanced_accuracy"] = balanced_accuracy_score(human, [int(p >= best) for p in p_accept])
    return out


def _cluster_interval(human: list[int], agent: list[int], clusters: list[str]) -> tuple[float, float] | None:
    from interplay.metrics.fidelity import balanced_accuracy, paired_bootstrap

    return paired_bootstrap(balanced_accuracy, human, agent, clusters=clusters)
