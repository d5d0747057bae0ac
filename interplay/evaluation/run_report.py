"""``interplay evaluate run RUN_DIR``: metrics of a free simulation run, with a CSV and plots."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from interplay.episode_log import EPISODES_FILE, EpisodeLog, latest_episodes
from interplay.metrics.registry import episode_values, run_values


def episode_row(ep: EpisodeLog) -> dict:
    """One CSV row: the episode's ids and every registered episode metric
    (:mod:`interplay.metrics.registry`)."""
    return {"episode_id": ep.episode_id, "record_id": ep.record_id, "termination": ep.termination.value,
            "accepted_item": ep.accepted_item or "", "target": ep.target.title, **episode_values(ep)}


def human_behaviour(run_dir: Path, episodes: list[EpisodeLog]) -> dict | None:
    """The behaviour figures (:mod:`interplay.metrics.behaviour`) of the human dialogues of the
    records the run's episodes drew from: the run's data folder and split (its ``config.json``);
    None for data without human dialogues (the demo set, a JSON file) or a run without a config."""
    from interplay.data.build import read_records
    from interplay.metrics.behaviour import behaviour_beside_people

    config = run_dir / "config.json"
    if not config.is_file():
        return None
    cfg = json.loads(config.read_text())
    folder, split = Path(str(cfg.get("data", ""))), cfg.get("split", "test")
    if not (folder / f"{split}.jsonl").is_file():
        return None
    human = behaviour_beside_people(episodes, read_records(folder, split))["human"]
    return None if human is None else {"data": str(folder), "split": split, **human}


def evaluate_run(run_dir: str | Path, out: str | Path | None = None, plots: bool = True) -> dict:
    """Compute every registered metric of the run; write ``metrics.json``, ``episodes.csv`` and PNG
    plots to ``out`` (default ``RUN_DIR/eval``)."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    episodes = latest_episodes(run_dir / EPISODES_FILE)
    if not episodes:
        raise ValueError(f"{run_dir / EPISODES_FILE}: no episodes")
    rows = [episode_row(ep) for ep in episodes]
    metrics = {
        "run": str(run_dir), "episodes": len(episodes),
        "agents": sorted({f"user={e.user_spec} recommender={e.recommender_spec}" for e in episodes}),
        **run_values(episodes, rows),
    }
    metrics["behaviour_human"] = human_behaviour(run_dir, episodes)
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
