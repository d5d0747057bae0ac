"""Free simulations as docs result files: a real run of the rule agents on hand-made records, its
outcomes and behaviour figures beside the human dialogues of the same records (known by hand)."""

from __future__ import annotations

import json

import pytest
from test_evaluation import ITEMS, records
from test_simulation import simulate

from interplay.results_docs import ResultsError, load_result


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "test.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records()))
    (d / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    return d


def test_a_free_simulation_beside_its_human_dialogues(data_dir, tmp_path):
    from typer.testing import CliRunner

    from interplay.cli import app

    run = tmp_path / "run"
    simulate("--user", "rule", "--recommender", "rule", "--data", data_dir, "--split", "test", "--episodes", 3,
             "--max-turns", 6, "--out", run)
    episodes = [json.loads(x) for x in (run / "episodes.jsonl").read_text().splitlines()]
    results = tmp_path / "results"
    got = CliRunner().invoke(app, ["docs", "from-runs", str(run), "--name", "free", "--command", "interplay simulate ...",
                                   "--results", str(results)])
    assert got.exit_code == 0, got.output
    outcome, behaviour = load_result(results / "free.json"), load_result(results / "free-behaviour.json")
    sim, human = outcome.rows
    assert sim["dialogues"] == "simulated: rule / rule" and sim["episodes"] == 3 and sim["checkpoint"] == "-"
    shares = [sim[k].value for k in ("SR", "ET", "FR")]
    assert sum(shares) == pytest.approx(1.0)
    assert sim["SR"].value == pytest.approx(sum(e["outcome"] == "SR" for e in episodes) / 3)
    assert sim["turns"].value == pytest.approx(sum(e["num_turns"] for e in episodes) / 3)
    # the human dialogues of the three records with a target ("none" has none): sr 3 turns, et 5,
    # fr 5; a person accepted the target in sr and et
    used = {e["record_id"] for e in episodes}
    assert used == {"sr", "et", "fr"}
    assert human["episodes"] == 3 and human["turns"].value == pytest.approx(13 / 3)
    assert human["SR"].value == pytest.approx(2 / 3) and human["FR"] is None
    h_user = next(r for r in behaviour.rows if r["dialogues"].startswith("human") and r["role"] == "user")
    # user turns: 3+2 (sr), 3+3+1 (et), 4+2+4 (fr) words; "Sounds great!" and "Yes!" repeat nothing
    assert h_user["words_per_turn"].value == pytest.approx(22 / 8) and h_user["words_per_turn"].n == 8
    assert h_user["self_repeat_rate"].value == 0.0 and h_user["repeated_ngram_share"].value == 0.0
    assert h_user["words_per_turn"].ci95[0] <= 22 / 8 <= h_user["words_per_turn"].ci95[1]
    # a run folder that is not one: one line naming the file
    bad = CliRunner().invoke(app, ["docs", "from-runs", str(tmp_path / "nowhere"), "--name", "x", "--command", "c",
                                   "--results", str(results)])
    assert bad.exit_code != 0 and "nowhere/config.json: missing" in bad.output.replace("\n", "")
    with pytest.raises(ResultsError, match="no run folders"):
        from interplay.evaluation.simulation_results import simulation_results

        simulation_results([], "c")
