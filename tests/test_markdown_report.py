"""``interplay evaluate report``: the figures of the evaluation folders, traced to each folder."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import subprocess_env

from interplay.metrics.agreement import decision_agreement


def write_eval(folder, **metrics):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def user_metrics(agent, data, split, human, agent_decisions, p=None):
    return dict(kind="user", agent=agent, data=data, split=split,
                settings={"generation": {"decoding": "constrained"}, "grounded": True,
                          "decision": "score" if p else "generate", "accept_threshold": 0.4},
                replay={"episodes": 4, "SR": 0.5, "ET": 0.25, "FR": 0.25, "user_parse_rate": 1.0,
                        "user_fallback_rate": 0.0},
                human_view={**decision_agreement(human, agent_decisions, p),
                            "decision_method": {"score" if p else "generate": len(human)}})


def test_report_reads_every_evaluation_and_names_its_folder(tmp_path):
    root = tmp_path / "runs"
    human = [1] * 8 + [0] * 4
    redial = user_metrics("usersim:ckpt", "data/redial", "test", human, [1] * 6 + [0, 0] + [0, 0, 0, 1],
                          p=[.9] * 6 + [.1, .2] + [.1, .2, .3, .8])
    inspired = user_metrics("usersim:ckpt", "data/inspired", "dev", human, [1] * 8 + [1, 1, 1, 0],
                            p=[.9] * 8 + [.7, .6, .5, .1])
    redial["human_view"]["slices"] = {"looked-up": {"n": 9, "balanced_accuracy": {"value": 0.9}}}
    inspired["human_view"]["slices"] = {"looked-up": {"n": 5, "balanced_accuracy": {"value": 0.85}}}
    write_eval(root / "a" / "usersim-redial", **redial)
    write_eval(root / "a" / "usersim-inspired", **inspired)
    write_eval(root / "b" / "rec", kind="recommender", agent="popular:data/redial", data="data/redial", split="test",
               settings={"rank_items": 0}, n=30, decoding={"not generated": 30}, forced_recommend=True, parse_rate=1.0,
               fallback_rate=0.0, recommended=30, unmatched_titles=0, **{"recall@1": 0.0333, "recall@10": 0.0667,
               "recall@50": None}, matchscore={"mean": 0.458})
    sim = user_metrics("usersim:sim-ckpt", "data/redial", "test", human, [1] * 8 + [1, 1, 0, 0], p=[.9] * 8 + [.9, .9, .1, .1])
    sim["agent_training"] = {"data": "data/sim-rule", "data_source": "episodes", "simulated": True,
                             "train_records": 452, "epochs": 1.0, "grounded": True, "counterfactual_negatives": 0.0,
                             "action_loss_weight": 1.0}
    write_eval(root / "a" / "simtrained-redial", **sim)
    (root / "not-an-eval").mkdir()
    out = tmp_path / "report"
    subprocess.run([sys.executable, "-m", "interplay.cli", "evaluate", "report", str(root), "--out", str(out)],
                   check=True, env=subprocess_env(), capture_output=True)
    text = (out / "report.md").read_text()
    assert "4 evaluations read" in text
    rows = [line for line in text.splitlines() if line.startswith("| usersim:ckpt | redial/test")]
    # balanced accuracy (6/8 + 3/4) / 2 = 0.75, 12 judged items of which 8 accepted
    assert len(rows) == 1 and "| 0.750 |" in rows[0] and "12 (8/4)" in rows[0] and "usersim-redial" in rows[0]
    gap = [line for line in text.splitlines() if line.startswith("| usersim:ckpt (score)")]
    # INSPIRED: every accept right, 1 of 4 rejections: (1 + 1/4) / 2 = 0.625
    assert gap == ["| usersim:ckpt (score) | 0.625 | 0.750 | 0.125 |",  # all judged items
                   "| usersim:ckpt (score) | 0.850 | 0.900 | 0.050 |"]  # the looked-up slice
    # the transfer table: only the evaluation that says what its checkpoint was trained on
    # ("usersim:ckpt" is not on this machine); (1 + 2/4) / 2 = 0.75
    transfer = text.split("### Transfer")[1].split("##")[0]
    sim_rows = [line for line in transfer.splitlines() if line.startswith("| usersim:")]
    assert len(sim_rows) == 1 and sim_rows[0].startswith(
        "| usersim:sim-ckpt | simulated: `data/sim-rule` (452 train) | 1 ep, grounded | redial/test | 0.750 |")
    rec = [line for line in text.splitlines() if line.startswith("| popular:data/redial")][0]
    assert "| 0.033 | 0.067 |  | 0.458 |" in rec and "`" + str(root / "b" / "rec") + "`" in rec
    assert (out / "agreement.png").stat().st_size > 0 and (out / "matchscore.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, "-m", "interplay.cli", "evaluate", "report", str(root / "not-an-eval")],
                         env=subprocess_env(), capture_output=True, text=True)
    assert bad.returncode == 2 and "no evaluation" in bad.stdout + bad.stderr
