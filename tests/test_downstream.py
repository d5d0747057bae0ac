"""Downstream utility rows: what a RecSim was trained on (real, or simulated with which user agent,
how many dialogues) traced through the files the pipeline writes, and its figures against values
computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interplay.checkpoint_info import agent_training
from interplay.evaluation.parts import write_csv as _write_csv
from interplay.evaluation.downstream import downstream_row, downstream_rows
from interplay.evaluation.scorecard import scorecard_markdown


def _chain(tmp_path, name: str, source: str, train: int, max_train: int = 0, user: str | None = None) -> str:
    """A simulation run (when simulated), the data folder built from it, a checkpoint's training
    record: the files `simulate`, `data build` and `train` write, linked as they link them."""
    paths = []
    if user:
        run = tmp_path / f"sim-{name}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"user": user, "recommender": "retrieval:data/redial"}))
        paths = [str(run)]
    data = tmp_path / f"data-{name}"
    data.mkdir()
    (data / "build.json").write_text(json.dumps({"source": source, "paths": paths, "records": {"train": train}}))
    ckpt = tmp_path / f"ckpt-{name}"
    ckpt.mkdir()
    (ckpt / "interplay_training.json").write_text(json.dumps({"config": {
        "role": "recommender", "data": str(data), "epochs": 1, "max_train_records": max_train}}))
    return f"recsim:{ckpt}"


def _evaluation(tmp_path, name: str, agent: str, rows: list[dict]) -> str:
    out = tmp_path / f"eval-{name}"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"kind": "recommender", "agent": agent, "data": "data/redial",
                                                  "split": "test", "agent_training": agent_training(agent),
                                                  "rank_depth": 10}))
    _write_csv(out / "recommendations.csv", rows)
    return str(out)


def _rows(ms, r1, r10):
    return [{"task_id": f"t{i}", "titles": ["X (2000)"], "matchscore": m, "recall_at_1": a, "recall_at_10": b}
            for i, (m, a, b) in enumerate(zip(ms, r1, r10))]


def test_downstream_rows_trace_the_corpus_and_average_by_hand(tmp_path):
    sim = _chain(tmp_path, "rule", "episodes", train=54, user="rule")
    real = _chain(tmp_path, "real", "redial", train=500, max_train=54)
    sim_eval = _evaluation(tmp_path, "rule", sim, _rows([0.2, 0.4, None, 0.9], [0, 0, 0, 1], [0, 1, 0, 1]))
    real_eval = _evaluation(tmp_path, "real", real, _rows([0.5, 0.7], [1, 0], [1, 1]))

    rows = downstream_rows([sim_eval, real_eval])
    assert [r["trained_on"] for r in rows] == ["real", "simulated"]  # the reference first
    r_real, r_sim = rows
    assert r_sim["user"] == "rule" and r_sim["simulated_with"] == "retrieval:data/redial"
    assert r_sim["train_records"] == 54 and r_real["train_records"] == 54  # 500 capped by --max-train-records
    assert r_real["user"] is None and r_sim["turns"] == 4
    # MatchScore leaves out the turn whose target is not in the catalogue (None): (0.2+0.4+0.9)/3
    assert r_sim["matchscore"]["n"] == 3 and r_sim["matchscore"]["value"] == pytest.approx(0.5)
    assert r_sim["recall@1"]["value"] == pytest.approx(0.25) and r_sim["recall@10"]["value"] == pytest.approx(0.5)
    lo, hi = r_sim["matchscore"]["ci95"]
    assert 0.2 <= lo <= 0.5 <= hi <= 0.9
    # the interval is the percentile bootstrap of the mean, resampled as paired_bootstrap does
    idx = np.random.default_rng(0).integers(0, 3, size=(2000, 3))
    means = np.array([0.2, 0.4, 0.9])[idx].mean(axis=1)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))

    md = scorecard_markdown({"config": {"data": "data/redial", "split": "test"}, "agents": [], "downstream": rows})
    assert "Downstream utility" in md
    assert "| simulated | rule | retrieval:data/redial | 54 | 0.50 [" in md


def test_downstream_refuses_what_is_not_a_trained_recommender_evaluation(tmp_path):
    with pytest.raises(ValueError, match="no metrics.json"):
        downstream_row(tmp_path)
    folder = _evaluation(tmp_path, "popular", "popular:data/redial", _rows([0.5], [0], [0]))
    with pytest.raises(ValueError, match="no training record"):
        downstream_row(folder)
