"""Registered metrics of a simulation run: ``interplay evaluate run`` computes every one.

A new metric is one function and one registration::

    from interplay.metrics.registry import register_episode_metric

    def recommendations_before_accept(ep):          # an EpisodeLog -> a number, or None
        return len(ep.recommended_items) if ep.accepted_item else None

    register_episode_metric("recommendations_before_accept", recommendations_before_accept)

An *episode metric* gives one value per episode: a column of ``episodes.csv`` and, with
``summarize=True``, its summary (count, mean, std, min, max; ``None`` values left out) in
``metrics.json``. A *run metric* gives one JSON value from all the episodes (a share, a
distribution, a corpus statistic such as Dist-4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interplay.episode_log import EpisodeLog
from interplay.metrics.behaviour import behaviour_figures, episode_dialogue
from interplay.metrics.core import (
    action_distribution,
    dist_n,
    outcome_class,
    summarize_values,
    target_accepted,
    termination_mix,
    turns_to_accept,
    words,
)
from interplay.protocol import Role


@dataclass(frozen=True)
class EpisodeMetric:
    name: str
    fn: Callable[[EpisodeLog], Any]
    summarize: bool = True


@dataclass(frozen=True)
class RunMetric:
    name: str
    fn: Callable[[list[EpisodeLog]], Any]


EPISODE_METRICS: dict[str, EpisodeMetric] = {}
RUN_METRICS: dict[str, RunMetric] = {}


def register_episode_metric(name: str, fn: Callable[[EpisodeLog], Any], summarize: bool = True) -> None:
    """A per-episode value (``episodes.csv`` column; summarised in ``metrics.json`` when ``summarize``)."""
    EPISODE_METRICS[name] = EpisodeMetric(name, fn, summarize)


def register_run_metric(name: str, fn: Callable[[list[EpisodeLog]], Any]) -> None:
    """A value computed from all the episodes of a run (a key of ``metrics.json``)."""
    RUN_METRICS[name] = RunMetric(name, fn)


def unregister_metric(name: str) -> None:
    EPISODE_METRICS.pop(name, None)
    RUN_METRICS.pop(name, None)


def episode_values(ep: EpisodeLog) -> dict[str, Any]:
    """Every registered episode metric of one episode."""
    return {m.name: m.fn(ep) for m in EPISODE_METRICS.values()}


def run_values(episodes: list[EpisodeLog], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every run metric, then the summary of every summarised episode metric (from ``rows``)."""
    out = {m.name: m.fn(episodes) for m in RUN_METRICS.values()}
    for m in EPISODE_METRICS.values():
        if m.summarize:
            out[m.name] = summarize_values(r[m.name] for r in rows).as_dict()
    return out


# -- the built-in metrics (docs/metrics.md) ------------------------------------------------------

def _texts(ep: EpisodeLog, role: Role) -> list[str]:
    return [t.text for t in ep.turns if t.role is role and t.text]


def _mean_words(role: Role) -> Callable[[EpisodeLog], float | None]:
    def mean_words(ep: EpisodeLog) -> float | None:
        texts = _texts(ep, role)
        return sum(map(words, texts)) / len(texts) if texts else None

    return mean_words


def parsed_rate(ep: EpisodeLog) -> float:
    """Share of generation attempts that gave a turn."""
    attempts = sum(1 + len(t.failed_attempts) for t in ep.turns)
    return sum(t.action is not None for t in ep.turns) / attempts if attempts else 0.0


def outcome_shares(episodes: list[EpisodeLog]) -> dict[str, float]:
    """Share of SR / ET / FR episodes."""
    classes = [outcome_class(ep) for ep in episodes]
    return {k: classes.count(k) / len(classes) for k in ("SR", "ET", "FR")}


register_episode_metric("num_turns", lambda ep: ep.num_turns)
register_episode_metric("turns_to_accept", turns_to_accept)
register_episode_metric("outcome", outcome_class, summarize=False)
register_episode_metric("target_accepted", lambda ep: int(target_accepted(ep)), summarize=False)
register_episode_metric("recommendations", lambda ep: len(ep.recommended_items), summarize=False)
register_episode_metric("user_words", _mean_words(Role.USER), summarize=False)
register_episode_metric("recommender_words", _mean_words(Role.RECOMMENDER), summarize=False)
register_episode_metric("parsed_rate", parsed_rate)
register_run_metric("termination", termination_mix)
register_run_metric("outcome", outcome_shares)
register_run_metric("actions", action_distribution)
register_run_metric("dist4", lambda eps: {role.value: dist_n([t for ep in eps for t in _texts(ep, role)], 4)
                                          for role in Role})
register_run_metric("words", lambda eps: {role.value: summarize_values(words(t) for ep in eps for t in _texts(ep, role))
                                          .as_dict() for role in Role})
register_run_metric("behaviour", lambda eps: behaviour_figures(episode_dialogue(ep) for ep in eps))
