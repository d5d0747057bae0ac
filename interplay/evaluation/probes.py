"""Counterfactual discrimination: recommenders built to be good or bad, never shown the target.

A faithful user simulator accepts items that fit its target attributes far more often than items
that contradict them (the ConvApparel check against a recommender built to be bad). Each probe
picks one catalogue item per record from the user's target *attributes* alone, the target item
itself excluded:

- ``matching``: an item covering the most target attributes;
- ``contradicting``: an item sharing none of them (:func:`~interplay.training.counterfactual.contradicts`);
- ``popular``: one of the 20 titles recommended most often in the train split;
- ``random``: any catalogue item;
- ``co-liked`` / ``co-disliked``: a film the target's fans on MovieLens love / dislike
  (:mod:`interplay.data.co_ratings`), never one the ``contradicting`` rule would pick. This pair
  comes from people's ratings, a rule disjoint from the one that chose the trained UserSim's
  negatives and from the match counts of its prompt, so its gap (the *disjoint gap*) does not grade
  the UserSim's own hint; the matching-vs-contradicting gap and the match AUC do, for an agent
  trained with those negatives or match counts (:func:`hint_use`).

The user answers the probe's recommendation after the recorded dialogue up to its first
recommendation (when it has disclosed what it wants), with the item's grounded facts as in a run.
Each task records the item's attribute match, so the scorecard reports acceptance per probe, the
matching-minus-contradicting gap, and the AUC of "accepted" against the match.
"""

from __future__ import annotations

import random

from interplay.catalogue import Catalogue, Item
from interplay.data.co_ratings import CoRatings
from interplay.data.schema import DialogueRecord
from interplay.episode import HistoryTurn, Observation, Target
from interplay.evaluation.tasks import TurnTask, _user_view, history, record_resolver
from interplay.grounding import ground_history
from interplay.protocol import Action, Role, mark_title
from interplay.training.counterfactual import contradicts

PROBES = ("matching", "contradicting", "popular", "random", "co-liked", "co-disliked")
#: the probes whose items come from ratings (they need a :class:`CoRatings` index)
CO_RATED = ("co-liked", "co-disliked")
POPULAR_POOL = 20


def attribute_match(item: Item, target: Target) -> float:
    """Share of the target's attributes the item has (case-insensitive; 0 without attributes)."""
    wanted = {a.lower() for a in target.attributes}
    return len(wanted & {a.lower() for a in item.attributes}) / len(wanted) if wanted else 0.0


def _not_target(item: Item, target: Target) -> bool:
    return item.item_id != target.item_id


class ProbeIndex:
    """A catalogue indexed for the probes: attribute -> items (so a matching item is found from
    the target's few attributes, not by scanning every item), and the items a user can read."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.items = list(catalogue)
        self.readable = [it for it in self.items if len(it.attributes) >= 2]
        self.by_attribute: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            for a in {a.lower() for a in it.attributes}:
                self.by_attribute.setdefault(a, []).append(i)

    def matching(self, target: Target) -> list[Item]:
        """The non-target items sharing the most target attributes (none when none shares one)."""
        from collections import Counter

        counts = Counter(i for a in {a.lower() for a in target.attributes} for i in self.by_attribute.get(a, ()))
        for n in sorted(set(counts.values()), reverse=True):
            best = [self.items[i] for i, c in sorted(counts.items()) if c == n]
            best = [it for it in best if _not_target(it, target)]
            if best:
                return best
        return []


def probe_item(kind: str, target: Target, catalogue: Catalogue | ProbeIndex, rng: random.Random,
               popular: list[str] | None = None, tries: int = 500, co_ratings: CoRatings | None = None) -> Item | None:
    """The item the ``kind`` probe recommends to a user with ``target``'s attributes (never the
    target; None when no catalogue item qualifies)."""
    index = catalogue if isinstance(catalogue, ProbeIndex) else ProbeIndex(catalogue)
    if kind in CO_RATED:
        if co_ratings is None:
            raise ValueError(f"the {kind!r} probe needs MovieLens co-ratings (interplay.data.co_ratings)")
        ids = co_ratings.co_liked(target.item_id) if kind == "co-liked" else co_ratings.co_disliked(target.item_id)
        pool = [it for i in ids if (it := index.catalogue.get(i)) is not None and len(it.attributes) >= 2
                and _not_target(it, target) and not contradicts(it, target)][:POPULAR_POOL]
        return rng.choice(pool) if pool else None
    if kind == "matching":
        pool = index.matching(target)
        return rng.choice(pool) if pool else None
    if kind == "popular":
        found = [index.catalogue.resolve(t) for t in (popular or [])]
        pool = [it for it in found if it is not None and _not_target(it, target)][:POPULAR_POOL]
        return rng.choice(pool) if pool else None
    if kind == "contradicting":
        ok, source = (lambda it: contradicts(it, target)), index.readable
    elif kind == "random":
        ok, source = (lambda it: _not_target(it, target)), index.items
    else:
        raise ValueError(f"unknown probe {kind!r} (known: {', '.join(PROBES)})")
    if not source:
        return None
    for _ in range(tries):  # rejection sampling: almost every item qualifies in a real catalogue
        it = rng.choice(source)
        if ok(it) and _not_target(it, target):
            return it
    pool = [it for it in source if ok(it) and _not_target(it, target)]  # a small or odd catalogue
    return rng.choice(pool) if pool else None


def probe_tasks(records: list[DialogueRecord], catalogue: Catalogue, grounded: bool = True,
                popular: list[str] | None = None, kinds: tuple[str, ...] = PROBES, seed: int = 0,
                co_ratings: CoRatings | None = None) -> tuple[list[TurnTask], dict[str, int]]:
    """One user decision per record with a target and per probe kind: the recorded turns before
    the first recommendation, then the probe's recommendation (grounded when ``grounded``).
    Without ``co_ratings`` the :data:`CO_RATED` probes are left out (counted in the skips)."""
    from collections import Counter

    tasks, skipped = [], Counter()
    index = ProbeIndex(catalogue)
    for r in records:
        view = _user_view(r, skipped)
        if view is None:
            continue
        turns = history(r)
        first = next((i for i, t in enumerate(r.turns) if t.role is Role.RECOMMENDER and t.titles), len(r.turns))
        before = turns[:first]
        while before and before[-1].role is Role.RECOMMENDER:  # the probe speaks in the recommender's place
            before = before[:-1]
        for kind in kinds:
            if kind in CO_RATED and co_ratings is None:
                skipped[f"no {kind} item (no MovieLens ratings given)"] += 1
                continue
            item = probe_item(kind, r.target, index, random.Random(f"{seed}:{r.id}:{kind}"), popular,
                              co_ratings=co_ratings)
            if item is None:
                skipped[f"no {kind} item"] += 1
                continue
            rec = HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                              text=f"You might like {mark_title(item.title)}.")
            shown = [*before, rec]
            if grounded:
                shown = ground_history(shown, catalogue, r.target, resolve=record_resolver(r, catalogue))
            tasks.append(TurnTask(f"probe-{r.id}-{kind}", r.id, Role.USER, view,
                                  Observation(history=shown, turn_index=len(shown)), target=r.target.title,
                                  extra={"probe": kind, "item": item.title, "item_id": item.item_id,
                                         "target_id": r.target.item_id,
                                         "attribute_match": attribute_match(item, r.target)}))
    return tasks, dict(skipped)


def discrimination(rows: list[dict], seed: int = 0) -> dict:
    """From probe decisions (rows with ``probe``, ``accept``, ``attribute_match``, ``record_id``):
    each probe's acceptance rate with a 95% bootstrap interval and its count; the matching minus
    contradicting gap over the records probed with both (bootstrap over those records); and the
    ROC AUC of the match score for telling accepted items from refused ones (None when the user
    accepted all or none). The co-liked minus co-disliked gap over the records probed with both
    is the ``disjoint_gap``."""
    from sklearn.metrics import roc_auc_score

    from interplay.metrics.fidelity import paired_bootstrap

    def rate(xs):
        return float(sum(xs) / len(xs)) if len(xs) else None

    out: dict = {"rates": {}}
    for kind in PROBES:
        acc = [int(r["accept"]) for r in rows if r.get("probe") == kind]
        out["rates"][kind] = {"n": len(acc), "accept_rate": rate(acc),
                              "ci95": paired_bootstrap(lambda x: x.mean(-1), acc, seed=seed)}
    by_record: dict[str, dict[str, int]] = {}
    for r in rows:
        by_record.setdefault(r["record_id"], {})[r.get("probe")] = int(r["accept"])
    pairs = [(v["matching"], v["contradicting"]) for v in by_record.values() if "matching" in v and "contradicting" in v]
    m, c = [p[0] for p in pairs], [p[1] for p in pairs]

    def gap(a, b):
        return float(sum(a) - sum(b)) / len(a) if len(a) else None

    out["gap"] = {"n": len(pairs), "value": gap(m, c),
                  "ci95": paired_bootstrap(lambda a, b: (a - b).mean(-1), m, c, seed=seed)}
    co = [(v["co-liked"], v["co-disliked"]) for _, v in sorted(by_record.items())
          if "co-liked" in v and "co-disliked" in v]
    cl, cd = [p[0] for p in co], [p[1] for p in co]
    out["disjoint_gap"] = {"n": len(co), "value": gap(cl, cd),
                           "ci95": paired_bootstrap(lambda a, b: (a - b).mean(-1), cl, cd, seed=seed)}
    labels = [int(r["accept"]) for r in rows]
    out["match_auc"] = float(roc_auc_score(labels, [r["attribute_match"] for r in rows])) \
        if len(set(labels)) == 2 else None
    return out


#: figures defined by the attribute rule of the training negatives or by the prompt's match counts
ATTRIBUTE_RULE_FIGURES = ("contradicting", "gap", "match_auc")


def hint_use(training: dict | None, spec: str = "") -> dict:
    """Whether an agent's training or prompt used the rule that defines a discrimination figure:
    negatives chosen by :func:`~interplay.training.counterfactual.contradicts` (the
    ``contradicting`` probe's rule), or match counts in the grounded facts (the attribute match
    the ``matching`` probe, the gap and the match AUC are defined by). Those figures are "by
    construction" for that agent: reported, marked, and never counted as the agent beating
    anyone. The ``disjoint_gap`` comes from ratings and is never by construction."""
    training = training or {}
    uses = []
    if training.get("counterfactual_negatives"):
        uses.append("training negatives chosen by the contradicting rule")
    if training.get("grounding_match"):
        # an ablation spec leaves them out of the prompt; the training saw them all the same
        uses.append("match counts in its training" if spec.startswith("usersim-nomatch:")
                    else "match counts in its prompt")
    return {"uses": uses, "by_construction": list(ATTRIBUTE_RULE_FIGURES) if uses else []}
