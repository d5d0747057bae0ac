"""Recommender evaluations as docs result files: Recall@k and MatchScore from the scored rows, with
dialogue-cluster intervals computed as paired_bootstrap computes them, and bad folders refused
naming file, line and field; the downstream-utility rows of a scorecard as their own table."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest

from interplay.evaluation.parts import write_csv as _write_csv
from interplay.evaluation.fidelity_results import scorecard_results
from interplay.evaluation.recommender_results import recommender_results, write_recommender_results
from interplay.metrics.fidelity import paired_bootstrap
from interplay.results_docs import ResultsError, load_result, render_table


def _eval(tmp_path, name, agent, rows, split="test", forced=True, depth=0):
    out = tmp_path / name
    out.mkdir()
    recommended = sum(1 for r in rows if r.get("recommended"))
    (out / "metrics.json").write_text(json.dumps({
        "kind": "recommender", "agent": agent, "data": "data/redial", "split": split, "forced_recommend": forced,
        "recommended": recommended, "recall@10": 0.5 if depth else None, "rank_depth": depth}))
    _write_csv(out / "recommendations.csv", rows)
    return out


def _row(task, record, r1, ms, r10=0.0, title="X (2000)"):
    return {"task_id": task, "record_id": record, "recommended": title, "recall_at_1": r1, "recall_at_10": r10,
            "recall_at_50": r10, "matchscore": ms}


def test_figures_are_the_row_means_with_dialogue_cluster_intervals(tmp_path):
    # two scored turns of dialogue d1 (both hits), one each of d2 and d3 (misses); one target unknown
    rows = [_row("t3", "d2", 0.0, 0.1), _row("t1", "d1", 1.0, 0.9), _row("t2", "d1", 1.0, None), _row("t4", "d3", 0.0, 0.3)]
    folder = _eval(tmp_path, "pop", "popular:data/redial", rows)
    table = recommender_results([folder], "interplay evaluate recommender ...", measured=dt.date(2026, 12, 6))
    row = table.rows[0]
    r1 = row["recall_at_1"]
    assert r1.value == pytest.approx(0.5) and r1.n == 4
    # sorted by task id, clustered by record: the same interval paired_bootstrap gives directly
    expected = paired_bootstrap(lambda v: float(v.mean()), [1.0, 1.0, 0.0, 0.0], clusters=["d1", "d1", "d2", "d3"])
    assert tuple(r1.ci95) == pytest.approx(expected)
    # resampling dialogues, not turns: a resample of d1 alone gives 1.0, of d2/d3 alone 0.0
    assert r1.ci95[0] == pytest.approx(0.0) and r1.ci95[1] == pytest.approx(1.0)
    ms = row["matchscore"]
    assert ms.n == 3 and ms.value == pytest.approx((0.1 + 0.9 + 0.3) / 3)  # the unknown target left out
    assert row["turns"] == "4 (3)" and row["recommended"] == 4 and row["mode"] == "forced"
    assert row["recall_at_10"] is None  # no ranking logged: '-' rather than a Recall@10 of the one title
    assert row["checkpoint"] == "-"  # an agent without weights
    md = render_table(table, "recommenders")
    assert "| popular:data/redial | forced | 4 (3) | 4 | 0.500 [0.000, 1.000] | - | - | 0.433 [" in md


def test_a_ranking_as_deep_as_k_shows_recall_at_k(tmp_path):
    rows = [_row("t1", "d1", 0.0, 0.5, r10=1.0), _row("t2", "d2", 0.0, 0.5, r10=0.0)]
    folder = _eval(tmp_path, "ret", "retrieval:data/redial", rows, depth=10)
    row = recommender_results([folder], "cmd").rows[0]
    assert row["recall_at_10"].value == pytest.approx(0.5)
    assert row["recall_at_50"] is None  # ranked 10 deep: Recall@50 would count the 10 only


def test_written_file_validates_and_bad_folders_are_refused_naming_the_place(tmp_path):
    a = _eval(tmp_path, "a", "rule", [_row("t1", "d1", 0.0, 0.2), _row("t2", "d2", 1.0, 0.8)])
    b = _eval(tmp_path, "b", "rule", [_row("t1", "d1", 0.0, 0.2)], split="valid")
    path = write_recommender_results([a], "recs", "cmd", tmp_path / "results", notes=["given: nothing"])
    assert load_result(path).notes[-1] == "given: nothing"
    with pytest.raises(ResultsError, match="different data or splits"):
        recommender_results([a, b], "cmd")
    with pytest.raises(ResultsError, match="metrics.json: missing"):
        recommender_results([tmp_path / "nowhere"], "cmd")
    # a row whose record id was lost: file, line and field
    with (b / "recommendations.csv").open() as f:
        rows = list(csv.DictReader(f))
    rows[0]["record_id"] = ""
    _write_csv(b / "recommendations.csv", rows)
    with pytest.raises(ResultsError, match=r"recommendations.csv:2: field 'record_id' is empty"):
        recommender_results([b], "cmd")


def test_scorecard_downstream_rows_become_their_own_table(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    down = [{"trained_on": "real", "user": None, "train_records": 26, "agent": f"recsim:{ckpt}",
             "matchscore": {"value": 0.45, "ci95": [0.40, 0.51], "n": 33},
             "recall@1": {"value": 0.0, "ci95": [0.0, 0.0], "n": 35}, "recall@10": {"value": 0.03, "ci95": None, "n": 35}}]
    card = {"config": {"data": "data/redial", "split": "test"}, "agents": [], "downstream": down}
    tables = scorecard_results(card, "interplay evaluate fidelity ...", dt.date(2026, 12, 6), "runs/x/scorecard.json")
    assert set(tables) == {"decisions", "probes", "replay", "downstream"}
    md = render_table(tables["downstream"], "fidelity-x-downstream")
    assert "| real | - | 26 | 0.45 [0.40, 0.51] (33) | 0.00 [0.00, 0.00] | 0.03 | recsim:" in md
    assert tables["downstream"].rows[0]["checkpoint"].startswith("sha256:")
    assert "downstream" not in scorecard_results({**card, "downstream": []}, "c", dt.date(2026, 12, 6), "s")
