"""Fidelity figures of a user simulator against people: decisions (balanced accuracy, Cohen's
kappa, F1 of the reject class, each with a dialogue-cluster bootstrap interval and its item and
dialogue counts), the slices a decision belongs to, and Jensen-Shannon divergences of behaviour
distributions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence

from interplay.data.schema import DECISION_SLICES

#: decision slices, set by provenance when the record is built (``HumanDecision.slice``): the
#: dialogue's target; other suggested items the seeker had not seen / had seen / did not say;
#: any item of a dialogue without a target (the user judges from the persona alone)
SLICES = DECISION_SLICES
#: the items two data sets judge alike: a recommended item the catalogue has facts for
#: (``item_facts``), that is the target or lies in a dialogue without one. Reactions to other
#: items (liked in passing, yet not chosen) and items no catalogue describes differ by corpus
LOOKED_UP = "looked-up"


def looked_up(row: dict) -> bool:
    """Whether a judged item is in the :data:`LOOKED_UP` slice."""
    return bool(row.get("item_facts")) and decision_slice(row) in ("target", "no-target")


def decision_slice(row: dict) -> str:
    """The slice of one judged item: its ``slice`` field, set by provenance at build time (never
    recomputed from titles)."""
    if row.get("slice") not in SLICES:
        raise ValueError(f"judged item {row.get('task_id', '?')}: no decision slice ({row.get('slice')!r}); "
                         "rows written before slices were set by provenance: run the evaluation again")
    return row["slice"]


def paired_bootstrap(stat: Callable, *columns: Sequence, clusters: Sequence[Hashable] | None = None,
                     confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``stat(*columns)``, items resampled together across the
    columns. With ``clusters`` (one key per item, e.g. its dialogue), whole clusters are resampled
    (the items of one dialogue are not independent); the result does not depend on the items'
    order. ``stat`` gets arrays (of shape (resamples, items) without clusters, one resample's items
    with them) and returns a value per resample, NaN where undefined (those resamples are left
    out). None when fewer than half are defined or there are fewer than two items (clusters)."""
    import numpy as np

    cols = [np.asarray(c, dtype=float) for c in columns]
    n = len(cols[0])
    if n < 2 or any(len(c) != n for c in cols):
        return None
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, n, size=(resamples, n))
        values = np.asarray(stat(*(c[idx] for c in cols)), dtype=float)
    else:
        if len(clusters) != n:
            raise ValueError(f"{len(clusters)} cluster keys for {n} items")
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(clusters):
            groups.setdefault(str(key), []).append(i)
        members = [np.asarray(groups[k]) for k in sorted(groups)]
        if len(members) < 2:
            return None
        draws = rng.integers(0, len(members), size=(resamples, len(members)))
        values = np.empty(resamples)
        for b, row in enumerate(draws):
            pick = np.concatenate([members[j] for j in row])
            values[b] = float(np.asarray(stat(*(c[pick] for c in cols)), dtype=float))
    values = values[~np.isnan(values)]
    if len(values) < resamples / 2:
        return None
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def _counts(human, agent):
    """tp, tn, fp, fn of accept decisions over the last axis (accept is the positive class)."""
    import numpy as np

    h, a = np.asarray(human, dtype=float), np.asarray(agent, dtype=float)
    return ((h * a).sum(-1), ((1 - h) * (1 - a)).sum(-1), ((1 - h) * a).sum(-1), (h * (1 - a)).sum(-1))


def _div(a, b):
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _scalar(x) -> float | None:
    import numpy as np

    x = np.asarray(x, dtype=float)
    return x if x.ndim else (None if np.isnan(x) else float(x))


def balanced_accuracy(human, agent):
    """Mean of the recalls of the accept and reject classes (None with one human class).
    Vectorised over leading axes (NaN there where undefined)."""
    tp, tn, fp, fn = _counts(human, agent)
    return _scalar((_div(tp, tp + fn) + _div(tn, tn + fp)) / 2)


def cohen_kappa(human, agent):
    """Cohen's kappa of the agent's decisions against the humans' (None when chance agreement
    is 1: both sides constant and equal)."""
    tp, tn, fp, fn = _counts(human, agent)
    n = tp + tn + fp + fn
    po = _div(tp + tn, n)
    pe = _div((tp + fn) * (tp + fp) + (tn + fp) * (tn + fn), n * n)
    return _scalar(_div(po - pe, 1 - pe))


def reject_f1(human, agent):
    """F1 of the reject class: how well the agent finds the humans' rejections (None when the
    humans never reject)."""
    import numpy as np

    tp, tn, fp, fn = _counts(human, agent)
    return _scalar(np.where(tn + fp > 0, _div(2 * tn, 2 * tn + fn + fp), np.nan))


def accuracy(human, agent):
    """Share of items where the agent decides as the human did (on a one-class slice, such as the
    target items, the only figure there is)."""
    tp, tn, fp, fn = _counts(human, agent)
    return _scalar(_div(tp + tn, tp + tn + fp + fn))


DECISION_FIGURES: dict[str, Callable] = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy,
                                         "kappa": cohen_kappa, "reject_f1": reject_f1}


def decision_figures(human: Sequence[int], agent: Sequence[int], seed: int = 0,
                     clusters: Sequence[Hashable] | None = None) -> dict:
    """Every decision figure with its 95% bootstrap interval (dialogue-cluster bootstrap when
    ``clusters`` gives each item's dialogue), the item counts per human class, the dialogue count,
    and the majority baseline (always the humans' more frequent decision) scored the same way."""
    human, agent = [int(x) for x in human], [int(x) for x in agent]
    if len(human) != len(agent):
        raise ValueError(f"{len(human)} human decisions but {len(agent)} agent decisions")
    out: dict = {"n": len(human), "human_accepts": sum(human), "human_rejects": len(human) - sum(human),
                 "agent_accepts": sum(agent)}
    if clusters is not None:
        out["dialogues"] = len(set(clusters))
        out["interval"] = "dialogue-cluster bootstrap"
    if not human:
        return out
    majority = [int(sum(human) * 2 >= len(human))] * len(human)
    for name, fn in DECISION_FIGURES.items():
        out[name] = {"value": fn(human, agent), "ci95": paired_bootstrap(fn, human, agent, clusters=clusters, seed=seed),
                     "majority": fn(human, majority)}
    return out


def sliced_decision_figures(rows: list[dict], seed: int = 0) -> dict:
    """:func:`decision_figures` over all judged items (``human_accept`` vs the agent's ``accept``),
    per :data:`SLICES` slice, and over the :data:`LOOKED_UP` items when rows say ``item_facts``.
    Rows are sorted by ``task_id`` and resampled by dialogue (``record_id``), so the figures do not
    depend on the order the rows were written in."""
    rows = sorted(rows, key=lambda r: str(r.get("task_id", "")))

    def figures(sub):
        return decision_figures([r["human_accept"] for r in sub], [r["accept"] for r in sub], seed,
                                clusters=[r.get("record_id", r.get("task_id")) for r in sub])

    out = {"all": figures(rows)}
    for s in SLICES:
        out[s] = figures([r for r in rows if decision_slice(r) == s])
    if any("item_facts" in r for r in rows):
        out[LOOKED_UP] = figures([r for r in rows if looked_up(r)])
    return out


def js_divergence(p: Counter | dict, q: Counter | dict) -> float | None:
    """Jensen-Shannon divergence (base 2: 0 for equal distributions, 1 for disjoint ones) of two
    count tables over the union of their keys; None when either is empty."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    keys = sorted(set(p) | set(q), key=str)
    a = np.array([p.get(k, 0) for k in keys], dtype=float)
    b = np.array([q.get(k, 0) for k in keys], dtype=float)
    if a.sum() == 0 or b.sum() == 0:
        return None
    return float(jensenshannon(a, b, base=2) ** 2)
