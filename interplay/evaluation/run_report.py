"""``interplay evaluate run RUN_DIR``: metrics of a free simulation run, with a CSV and plots."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from interplay.episode_log import EPISODES_FILE, EpisodeLog, latest_episodes
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


def episode_row(ep: EpisodeLog) -> dict:
    """One CSV row of per-episode values."""
    user = [t.text for t in ep.turns if t.role is Role.USER and t.text]
    rec = [t.text for t in ep.turns if t.role is Role.RECOMMENDER and t.text]
    attempts = sum(1 + len(t.failed_attempts) for t in ep.turns)
    return {
        "episode_id": ep.episode_id, "record_id": ep.record_id, "termination": ep.termination.value,
        "num_turns": ep.num_turns, "turns_to_accept": turns_to_accept(ep), "outcome": outcome_class(ep),
        "target_accepted": int(target_accepted(ep)), "accepted_item": ep.accepted_item or "",
        "target": ep.target.title, "recommendations": len(ep.recommended_items),
        "user_words": sum(map(words, user)) / len(user) if user else None,
        "recommender_words": sum(map(words, rec)) / len(rec) if rec else None,
        "parsed_rate": sum(t.action is not None for t in ep.turns) / attempts if attempts else 0.0,
    }


def evaluate_run(run_dir: str | Path, out: str | Path | None = None, plots: bool = True) -> dict:
    """Compute the run's metrics; write ``metrics.json``, ``episodes.csv`` and PNG plots to ``out``
    (default ``RUN_DIR/eval``)."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    episodes = latest_episodes(run_dir / EPISODES_FILE)
    if not episodes:
        raise ValueError(f"{run_dir / EPISODES_FILE}: no episodes")
    rows = [episode_row(ep) for ep in episodes]
    outcomes = [r["outcome"] for r in rows]
    texts = {role: [t.text for ep in episodes for t in ep.turns if t.role is role and t.text] for role in Role}
    metrics = {
        "run": str(run_dir), "episodes": len(episodes),
        "agents": sorted({f"user={e.user_spec} recommender={e.recommender_spec}" for e in episodes}),
        "termination": termination_mix(episodes),
        "outcome": {k: outcomes.count(k) / len(outcomes) for k in ("SR", "ET", "FR")},
        "turns_to_accept": summarize_values(r["turns_to_accept"] for r in rows).as_dict(),
        "num_turns": summarize_values(r["num_turns"] for r in rows).as_dict(),
        "parsed_rate": summarize_values(r["parsed_rate"] for r in rows).as_dict(),
        "actions": action_distribution(episodes),
        "dist4": {role.value: dist_n(texts[role], 4) for role in Role},
        "words": {role.value: summarize_values(words(t) for t in texts[role]).as_dict() for role in Role},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with (out / "episodes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if plots:
        _plots(metrics, rows, out)
    return metrics


def _plots(metrics: dict, rows: list[dict], out: Path) -> None:
    os.environ.setdefault("MPLCONFIGDIR", str(out / ".mpl"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    accepted = [r["turns_to_accept"] for r in rows if r["turns_to_accept"] is not None]
    ax.hist(accepted, bins=range(0, max(accepted, default=1) + 2), color="#4c72b0", edgecolor="white")
    ax.set(xlabel="turns to accept", ylabel="episodes", title=f"Turns to accept ({len(accepted)} of {len(rows)})")
    fig.tight_layout()
    fig.savefig(out / "turns_to_accept.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, role in zip(axes, ("user", "recommender")):
        mix = {a: v for a, v in metrics["actions"][role].items() if v > 0}
        ax.bar(list(mix), list(mix.values()), color="#55a868")
        ax.set_title(f"{role} actions")
        ax.tick_params(axis="x", rotation=45)
    axes[0].set_ylabel("share of turns")
    fig.tight_layout()
    fig.savefig(out / "action_mix.png", dpi=120)
    plt.close(fig)
