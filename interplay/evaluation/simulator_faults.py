"""Simulator-fault rate: the share of simulated episodes that go wrong through the user simulator
rather than the recommender under test (tau2-bench found up to 30% of failed runs were the
simulator's fault). Each kind is a documented rule over the episode log:

- ``ended_before_recommendation``: the user accepted (ended the episode) before any recommender
  turn named a title;
- ``accept_without_recommendation``: the user accepted right after a recommender turn that named
  no title, although an earlier one did;
- ``target_leak``: a user turn names the target's title (:func:`~interplay.episode.find_target_leak`)
  before any recommender turn named the target (accepting a recommended target by name is fine);
- ``repeats_itself``: a user turn says what its previous turn said (case, punctuation and spacing
  ignored);
- ``contradicts_target``: a user turn refuses one of its own target attributes: a negation
  ("not", "no", "don't", "hate", ...) at most three words before the attribute.
"""

from __future__ import annotations

import re

from interplay.episode import find_target_leak
from interplay.episode_log import EpisodeLog
from interplay.protocol import Action, Role

FAULT_KINDS = ("ended_before_recommendation", "accept_without_recommendation", "target_leak", "repeats_itself",
               "contradicts_target")
_NEGATIONS = r"(?:not|no|never|dont|do not|hate|hates|dislike|without|nothing|isnt|arent|cant stand)"
EXAMPLES_PER_KIND = 2


def _norm(text: str | None) -> str:
    """Lower case, punctuation dropped (``don't`` -> ``dont``), spaces collapsed."""
    return " ".join(re.sub(r"[^\w\s]", "", (text or "").lower()).split())


def refuses_attribute(text: str, attribute: str) -> bool:
    """``text`` negates ``attribute`` within three words (``"I don't like horror"`` refuses horror)."""
    pattern = rf"\b{_NEGATIONS}\b(?: \w+){{0,3}}? {re.escape(_norm(attribute))}\b"
    return re.search(pattern, _norm(text)) is not None


def episode_faults(ep: EpisodeLog) -> list[str]:
    """The fault kinds (:data:`FAULT_KINDS`) the user simulator commits in one episode."""
    faults: set[str] = set()
    recommended_yet, last_rec_titles, previous_user, target_named = False, False, None, False
    for t in ep.turns:
        if t.role is Role.RECOMMENDER:
            last_rec_titles = bool(t.titles) and t.action is Action.RECOMMEND
            recommended_yet = recommended_yet or last_rec_titles
            target_named = target_named or ep.target.item_id in t.item_ids or \
                find_target_leak(t.text or "", ep.target) is not None
            continue
        if t.text is None:
            continue
        if t.action is Action.ACCEPT:
            if not recommended_yet:
                faults.add("ended_before_recommendation")
            elif not last_rec_titles:
                faults.add("accept_without_recommendation")
        if not target_named and find_target_leak(t.text, ep.target) is not None:
            faults.add("target_leak")
        if previous_user is not None and _norm(t.text) and _norm(t.text) == previous_user:
            faults.add("repeats_itself")
        if any(refuses_attribute(t.text, a) for a in ep.target.attributes):
            faults.add("contradicts_target")
        previous_user = _norm(t.text)
    return [k for k in FAULT_KINDS if k in faults]


def simulator_fault_rate(episodes: list[EpisodeLog]) -> dict:
    """Per kind: episodes, share and up to two example episode ids; the share of episodes with
    any fault; and among the failed runs (the target not accepted) the share with a simulator fault."""
    from interplay.metrics.core import target_accepted

    per_kind: dict[str, list[str]] = {k: [] for k in FAULT_KINDS}
    faulty = failed = failed_faulty = 0
    for ep in episodes:
        kinds = episode_faults(ep)
        for k in kinds:
            per_kind[k].append(ep.episode_id)
        faulty += bool(kinds)
        if not target_accepted(ep):
            failed += 1
            failed_faulty += bool(kinds)
    n = len(episodes)
    return {
        "episodes": n,
        "any_fault": faulty / n if n else None,
        "failed_runs": failed,
        "failed_runs_simulator_share": failed_faulty / failed if failed else None,
        "kinds": {k: {"episodes": len(ids), "share": len(ids) / n if n else None, "examples": ids[:EXAMPLES_PER_KIND]}
                  for k, ids in per_kind.items()},
    }
