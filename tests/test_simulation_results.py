"""Free simulations as docs result files: a real run of the rule agents on hand-made records, its
outcomes and behaviour figures beside the human dialogues of the same records (known by hand)."""

from __future__ import annotations

import json

import pytest
from test_evaluation import ITEMS, records
from test_simulation import simulate

from interplay.protocol import Role
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


def test_a_run_on_the_demo_set_is_compared_with_the_people_of_a_named_split(data_dir, tmp_path):
    """The demo set has no human dialogues: ``--people DATA:SPLIT`` puts every human dialogue of
    that split beside the run (the demo's behaviour figures against ReDial's people)."""
    from typer.testing import CliRunner

    from interplay.cli import app
    from interplay.data.build import read_records
    from interplay.metrics.behaviour import record_dialogue, turn_values

    run = tmp_path / "demo-run"
    simulate("--user", "rule", "--recommender", "rule", "--data", "demo", "--episodes", 2, "--max-turns", 4,
             "--out", run)
    results = tmp_path / "results"
    args = ["docs", "from-runs", str(run), "--name", "demo", "--command", "c", "--results", str(results)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "--people" in refused.output.replace("\n", "")
    got = CliRunner().invoke(app, [*args, "--people", f"{data_dir}:test"])
    assert got.exit_code == 0, got.output
    people = read_records(data_dir, "test")
    human = load_result(results / "demo.json").rows[-1]
    assert human["dialogues"] == "human (data test, all)" and human["episodes"] == len(people) == 4
    h_user = next(r for r in load_result(results / "demo-behaviour.json").rows
                  if r["dialogues"].startswith("human") and r["role"] == "user")
    words = [w for r in people for w in turn_values(record_dialogue(r), Role.USER)["words_per_turn"]]
    assert h_user["words_per_turn"].value == pytest.approx(sum(words) / len(words))
    bad = CliRunner().invoke(app, [*args, "--people", "data-test"])
    assert bad.exit_code != 0 and "DATA:SPLIT" in bad.output


def test_each_behaviour_row_names_the_checkpoint_of_the_agent_that_played_its_role(tmp_path):
    """The recommender's row carries the RecSim's hash, the user's row the UserSim's (and the
    threshold, a user setting, only on the user's row)."""
    from interplay.evaluation.fidelity_results import agent_checkpoint
    from interplay.evaluation.simulation_results import _behaviour_rows

    checkpoints = {Role.USER: agent_checkpoint("usersim"), Role.RECOMMENDER: agent_checkpoint("recsim")}
    assert checkpoints[Role.USER] != checkpoints[Role.RECOMMENDER] and "-" not in checkpoints.values()
    dialogue = [(Role.USER, "I want a heist film."), (Role.RECOMMENDER, "Try Heat.")]
    rows = {r["role"]: r for r in _behaviour_rows("x", [dialogue], checkpoints, 0.7)}
    assert rows["user"]["checkpoint"] == checkpoints[Role.USER] and rows["user"]["threshold"] == 0.7
    assert rows["recommender"]["checkpoint"] == checkpoints[Role.RECOMMENDER] and rows["recommender"]["threshold"] is None
