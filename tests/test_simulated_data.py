"""Simulated dialogues as training records (interplay.data.simulated): a real rule-agent run on
Ray, read back through `interplay data build --source episodes`."""

import json

import pytest
from test_simulation import simulate

from interplay.data.build import build_dataset, read_records
from interplay.data.errors import DataFormatError
from interplay.data.simulated import split_of
from interplay.episode_log import Termination, read_episodes


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """20 rule-agent episodes on the demo set, and a one-movie MovieLens folder for the build."""
    root = tmp_path_factory.mktemp("sim")
    simulate("--user", "rule", "--recommender", "rule", "--episodes", 20, "--max-turns", 8, "--out", root / "rules")
    (root / "ml" / "movielens-small").mkdir(parents=True)
    (root / "ml" / "movielens-small" / "movies.csv").write_text("movieId,title,genres\n1,Heat (1995),Action|Crime\n")
    return root


def test_episodes_become_records_turn_for_turn(run):
    report = build_dataset("episodes", run / "rules", run / "out", run / "ml", progress=False)
    episodes = {e.episode_id: e for e in read_episodes(run / "rules" / "episodes.jsonl")}
    records = read_records(run / "out")
    assert len(records) == len(episodes) == 20 and report["skipped"] == 0
    assert sum(report["records"].values()) == 20 and set(report["records"]) <= {"train", "valid"}
    for r in records:
        ep = episodes[r.meta["episode_id"]]
        assert r.id == f"rules/{ep.episode_id}" and r.split == split_of(r.id, 0.1)
        assert r.persona == ep.persona and r.target == ep.target and r.meta["from_record"] == ep.record_id
        assert [(t.role, t.action, t.text, t.titles) for t in r.turns] == \
               [(t.role, t.action, t.text, t.titles) for t in ep.turns]
        accepted = ep.accepted_item if ep.termination is Termination.ACCEPTED else None
        assert r.outcome.accepted_item == accepted
        assert r.outcome.rejected_items == [x for x in dict.fromkeys(ep.recommended_items) if x != accepted]
    assert any(r.outcome.accepted_item for r in records)


def test_unfinished_or_malformed_episodes_are_named_or_skipped(run, tmp_path):
    lines = (run / "rules" / "episodes.jsonl").read_text().splitlines()
    bad = json.loads(lines[0])
    bad.update(episode_id="broken", termination="protocol_error")
    again = json.loads(lines[1])
    again["wall_s"] = 99.0  # a resumed run re-ran episode 2: its latest line counts, once
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "episodes.jsonl").write_text(
        "\n".join([*lines, json.dumps(bad), json.dumps(again), '{"episode_id": "half"}']) + "\n")
    with pytest.raises(DataFormatError, match=r"episodes.jsonl:21: field 'termination': .*protocol_error"):
        build_dataset("episodes", tmp_path / "mixed", tmp_path / "out", run / "ml", progress=False)
    assert not (tmp_path / "out").exists()  # a failed build writes nothing
    report = build_dataset("episodes", tmp_path / "mixed", tmp_path / "out", run / "ml", skip_invalid=True,
                           progress=False)
    assert report["skipped"] == 2 and sum(report["records"].values()) == 20
    assert ":21: field 'termination'" in report["skipped_reasons"][0]
    assert ":23: field 'record_id'" in report["skipped_reasons"][1]  # the first missing field, named
    with pytest.raises(DataFormatError, match="no episode log"):
        build_dataset("episodes", tmp_path, tmp_path / "out2", run / "ml", progress=False)
