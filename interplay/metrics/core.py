"""The metric definitions. Each is a small function with its definition in the docstring."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from interplay.episode_log import EpisodeLog, Termination
from interplay.protocol import TITLE_CLOSE, TITLE_OPEN, Action, Role

_WORD = re.compile(r"[a-z0-9']+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of a turn text, title markup removed."""
    return _WORD.findall(text.replace(TITLE_OPEN, " ").replace(TITLE_CLOSE, " ").lower())


def words(text: str) -> int:
    """Number of word tokens of a text (the "length" of a reply)."""
    return len(tokens(text))


def dist_n(texts: Iterable[str], n: int = 4) -> float:
    """Dist-n (Li et al., 2016): distinct n-grams / all n-grams over the whole corpus of texts.

    n-grams never span two texts; a corpus with no n-gram scores 0."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        t = tokens(text)
        grams.extend(tuple(t[i : i + n]) for i in range(len(t) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def target_accepted(ep: EpisodeLog) -> bool:
    """The episode ended with the user accepting the target item: the accepted item's id (resolved
    when the turn was logged) is the target's. Titles are never compared."""
    if ep.termination is not Termination.ACCEPTED or ep.accepted_item is None:
        return False
    if ep.accepted_item_id is None and any(t.titles and not t.item_ids for t in ep.turns):
        raise ValueError(f"episode {ep.episode_id}: its turns have no item ids (a log written before items "
                         "were compared by id): run the episodes again")
    return ep.accepted_item_id is not None and ep.accepted_item_id == ep.target.item_id


def outcome_class(ep: EpisodeLog) -> str:
    """SR / ET / FR of one episode (paper, Table 1).

    ``SR``: the user accepted the target. ``ET`` (early termination): the user accepted another
    item. ``FR``: the user accepted nothing. Exactly one holds for every episode."""
    if ep.termination is not Termination.ACCEPTED or ep.accepted_item is None:
        return "FR"
    return "SR" if target_accepted(ep) else "ET"


def termination_mix(episodes: list[EpisodeLog]) -> dict[str, float]:
    """Share of episodes per termination reason (sums to 1 over a non-empty run)."""
    counts = Counter(ep.termination.value for ep in episodes)
    return {t.value: counts[t.value] / len(episodes) if episodes else 0.0 for t in Termination}


def turns_to_accept(ep: EpisodeLog) -> int | None:
    """Number of turns up to and including the acceptance; ``None`` if nothing was accepted."""
    return ep.num_turns if ep.termination is Termination.ACCEPTED else None


def action_distribution(episodes: list[EpisodeLog]) -> dict[str, dict[str, float]]:
    """Per role, the share of its parsed turns taking each action."""
    out: dict[str, dict[str, float]] = {}
    for role in Role:
        counts = Counter(t.action.value for ep in episodes for t in ep.turns if t.role is role and t.action)
        total = sum(counts.values())
        out[role.value] = {a.value: counts[a.value] / total if total else 0.0 for a in Action}
    return out


def recall_at_k(ranked_ids: list[str | None], target_id: str, k: int) -> float:
    """1 if the target's id is among the first ``k`` ranked items' ids, else 0."""
    return float(target_id in ranked_ids[:k])


@dataclass
class Summary:
    """count, mean, std (population), min, max of per-episode values (``None`` values skipped)."""

    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def summarize_values(values: Iterable[float | None]) -> Summary:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return Summary(0, None, None, None, None)
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return Summary(len(vals), mean, std, min(vals), max(vals))
