"""Episode log reading/writing: whole lines only, errors that name file, line and field."""

import json

import pytest

from interplay.episode import Persona, Target
from interplay.episode_log import EpisodeLog, EpisodeLogError, EpisodeLogWriter, Termination, read_episodes, summarize


def episode(i: int, termination=Termination.MAX_TURNS) -> EpisodeLog:
    return EpisodeLog(episode_id=f"e{i}", record_id="r", source="demo", seed=i, user_spec="rule",
                      recommender_spec="rule", persona=Persona(summary="s"), target=Target(item_id="x:1", title="T"),
                      turns=[], termination=termination, num_turns=0)


def test_writer_appends_and_drops_partial_tail(tmp_path):
    with EpisodeLogWriter(tmp_path) as w:
        w.write(episode(0))
        w.write(episode(1))
    path = tmp_path / "episodes.jsonl"
    with path.open("a") as fh:  # a run killed while writing its third episode
        fh.write(episode(2).model_dump_json()[:40])
    assert [e.episode_id for e in read_episodes(path, allow_partial_tail=True)] == ["e0", "e1"]
    with pytest.raises(EpisodeLogError):
        list(read_episodes(path))
    with EpisodeLogWriter(tmp_path) as w:  # reopening truncates the partial line, keeps the rest
        assert w.existing_ids() == {"e0", "e1"}
        w.write(episode(3))
    assert [e.episode_id for e in read_episodes(path)] == ["e0", "e1", "e3"]


def test_bad_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "episodes.jsonl"
    good = episode(0).model_dump_json()
    bad = json.loads(good)
    bad["termination"] = "exploded"
    path.write_text(good + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(EpisodeLogError) as info:
        list(read_episodes(path))
    assert str(info.value).startswith(f"{path}:2: field 'termination'")


def test_summary_counts():
    eps = [episode(0, Termination.ACCEPTED), episode(1, Termination.ACCEPTED), episode(2, Termination.AGENT_ERROR)]
    s = summarize(eps)
    assert s["episodes"] == 3 and s["termination"] == {"accepted": 2, "max_turns": 0, "protocol_error": 0,
                                                         "agent_error": 1}
