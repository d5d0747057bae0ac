"""Downstream utility of a user simulator: how good a recommender trained on the dialogues it
simulated is on held-out human dialogues.

Each input is a finished ``interplay evaluate recommender`` folder of a trained RecSim. Its
``metrics.json`` records what the checkpoint was trained on (``agent_training``): real dialogues,
or episodes simulated with a user agent X (``simulated_by``, read from the run's ``config.json``).
One row per folder: the training corpus, its size, and MatchScore, Recall@1 and Recall@10 at the
recorded recommendations, each with a 95% bootstrap interval over the scored turns and n beside
it. ``experiments/downstream_utility.sh`` produces the folders (same size, same recipe per user
agent); ``interplay evaluate fidelity --downstream FOLDER`` puts the rows in the scorecard.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from interplay.evaluation.agent_report import METRICS_FILE
from interplay.metrics.fidelity import paired_bootstrap

#: the per-turn columns of ``recommendations.csv`` a row summarises
FIGURES = {"matchscore": "matchscore", "recall@1": "recall_at_1", "recall@10": "recall_at_10"}
RECOMMENDATIONS_CSV = "recommendations.csv"


def mean_with_interval(values: list[float], seed: int = 0) -> dict:
    """``{"value", "ci95", "n"}``: the mean and its percentile-bootstrap 95% interval."""
    import numpy as np

    if not values:
        return {"value": None, "ci95": None, "n": 0}
    return {"value": float(np.mean(values)), "ci95": paired_bootstrap(lambda x: x.mean(axis=-1), values, seed=seed),
            "n": len(values)}


def _column(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def downstream_row(folder: str | Path, seed: int = 0) -> dict:
    """The downstream-utility row of one recommender evaluation folder (ValueError naming the
    folder when it is not a finished evaluation of a trained recommender)."""
    folder = Path(folder)
    path = folder / METRICS_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: no {METRICS_FILE} (not a finished 'interplay evaluate recommender' folder)")
    m = json.loads(path.read_text())
    if m.get("kind") != "recommender":
        raise ValueError(f"{path}: kind {m.get('kind')!r}, expected a recommender evaluation")
    training = m.get("agent_training")
    if not training:
        raise ValueError(f"{path}: agent {m.get('agent')!r} has no training record (downstream utility compares "
                         "recommenders trained with 'interplay train')")
    with (folder / RECOMMENDATIONS_CSV).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by = training.get("simulated_by") or []
    user = by[0].get("user") if training.get("simulated") and by else None
    return {
        "folder": str(folder), "agent": m["agent"], "data": f"{m['data']} ({m['split']})",
        "trained_on": "simulated" if training.get("simulated") else "real",
        "user": user, "simulated_with": by[0].get("recommender") if by else None,
        "train_data": training.get("data"), "train_records": training.get("train_records"),
        "epochs": training.get("epochs"), "turns": len(rows),
        **{name: mean_with_interval(_column(rows, col), seed) for name, col in FIGURES.items()},
        "rank_depth": m.get("rank_depth"),
    }


def downstream_rows(folders: list[str], seed: int = 0) -> list[dict]:
    """One row per folder, real-data rows first, then by user agent."""
    rows = [downstream_row(f, seed) for f in folders]
    return sorted(rows, key=lambda r: (r["trained_on"] != "real", r["user"] or ""))
