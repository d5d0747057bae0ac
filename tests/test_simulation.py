"""Whole runs on real Ray through the CLI: rule agents, LLM agents, leak checks, run-dir rules."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env

from interplay.episode_log import Termination, read_episodes
from interplay.simulation_data import load_demo

INTERPLAY = [sys.executable, "-m", "interplay.cli"]


def simulate(*args, env=None, timeout=600, check=True):
    proc = subprocess.run([*INTERPLAY, "simulate", "--no-progress", *map(str, args)], env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_rule_agents_twenty_episodes(tmp_path):
    out = tmp_path / "R"
    simulate("--user", "rule", "--recommender", "rule", "--episodes", 20, "--max-turns", 10, "--out", out)
    episodes = list(read_episodes(out / "episodes.jsonl"))
    demo = load_demo()
    assert len(episodes) == 20
    assert sorted(e.episode_id for e in episodes) == [f"{i:06d}-{demo.episodes[i % 12].record_id}" for i in range(20)]
    for ep in episodes:
        assert ep.termination in set(Termination) and ep.termination is not Termination.AGENT_ERROR
        assert ep.num_turns == len(ep.turns) <= 10
        assert [t.role.value for t in ep.turns] == (["user", "recommender"] * 5)[: ep.num_turns]
        if ep.termination is Termination.ACCEPTED:
            assert ep.turns[-1].action.value == "accept" and ep.accepted_item in ep.recommended_items
    # the rule user accepts fitting items: some episodes end accepted, some on the true target
    accepted = [e for e in episodes if e.termination is Termination.ACCEPTED]
    assert accepted and any(e.accepted_item == e.target.title for e in accepted)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 20 and sum(summary["termination"].values()) == 20
    assert summary["termination"]["accepted"] == len(accepted)
    config = json.loads((out / "config.json").read_text())
    assert config["user"] == "rule" and config["episodes"] == 20 and config["max_turns"] == 10
    # the same run dir is refused without --resume, and nothing is lost
    again = simulate("--user", "rule", "--recommender", "rule", "--episodes", 20, "--out", out, check=False)
    assert again.returncode == 2 and "--resume" in again.stdout
    assert len(list(read_episodes(out / "episodes.jsonl"))) == 20
    # resuming with different agents is refused, naming the setting
    other = simulate("--user", "llm", "--recommender", "rule", "--episodes", 20, "--out", out, "--resume", check=False)
    assert other.returncode == 2 and "user" in other.stdout


def test_user_agent_never_receives_target_title_or_id(tmp_path):
    record = tmp_path / "record"
    record.mkdir()
    out = tmp_path / "run"
    simulate("--user", "py:recording_agents:RecordingUser", "--recommender", "rule", "--episodes", 24,
             "--out", out, env=subprocess_env(INTERPLAY_RECORD_DIR=str(record)))
    episodes = {e.episode_id: e for e in read_episodes(out / "episodes.jsonl")}
    assert len(episodes) == 24 and len(list(record.iterdir())) == 24
    checked_obs = 0
    for path in record.iterdir():
        ep = episodes[path.stem]
        title, item_id = ep.target.title, ep.target.item_id
        name = title.rsplit(" (", 1)[0]
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        views = [x for x in lines if x["kind"] == "view"]
        assert len(views) == 1
        assert name.lower() not in views[0]["payload"].lower() and item_id not in views[0]["payload"]
        for x in lines:
            assert item_id not in x["payload"]
            if x["kind"] == "observation":
                checked_obs += 1
                # the title may reach the user only through the recommender: the first turn of the
                # history that names it must be a recommender turn
                history = json.loads(x["payload"])["history"]
                naming = [t["role"] for t in history if name.lower() in t["text"].lower()]
                assert not naming or naming[0] == "recommender"
    assert checked_obs >= 24


def test_llm_agents_share_one_batched_server_and_log_protocol_errors(tmp_path, tiny_model_dir):
    out = tmp_path / "llm"
    spec = f"llm:{tiny_model_dir}"
    simulate("--user", spec, "--recommender", spec, "--episodes", 6, "--max-turns", 4, "--max-new-tokens", 12,
             "--concurrency", 6, "--max-retries", 1, "--decoding", "free", "--out", out)
    episodes = list(read_episodes(out / "episodes.jsonl"))
    assert len(episodes) == 6
    for ep in episodes:
        # a random-weight model never writes the protocol: each episode ends on a logged protocol error
        assert ep.termination is Termination.PROTOCOL_ERROR
        bad = ep.turns[-1]
        assert bad.action is None and bad.raw.startswith("<action>") and bad.parse_error
        assert len(bad.failed_attempts) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["model_servers"]) == [str(tiny_model_dir)]  # one server for both roles
    stats = summary["model_servers"][str(tiny_model_dir)]
    assert stats["requests"] == 12 and stats["mean_batch"] > 1.0
    assert summary["parsed_turn_rate"] == 0.0
    # the simulation defaults: seeded sampling and the repetition controls; the demo set has no
    # dialogues to take turn caps from
    assert summary["decoding"]["user"]["temperature"] == 0.7 and summary["decoding"]["recommender"]["no_repeat_ngram"] == 3
    assert summary["decoding"]["user"]["max_new_tokens"] == 12 and summary["turn_caps"] == {}


@pytest.mark.slow
def test_default_llm_agents_run_without_crashing(tmp_path):
    out = tmp_path / "default"
    simulate("--user", "llm", "--recommender", "llm", "--episodes", 2, "--max-turns", 4, "--max-new-tokens", 32,
             "--max-retries", 1, "--out", out)
    episodes = list(read_episodes(out / "episodes.jsonl"))
    titles = {it.title for it in load_demo().catalogue}
    assert len(episodes) == 2
    for ep in episodes:
        # constrained decoding (the default): legal turns only, titles from the catalogue
        assert ep.termination in {Termination.ACCEPTED, Termination.MAX_TURNS}
        assert all(t.action is not None and not t.failed_attempts for t in ep.turns)
        assert all(t.raw for t in ep.turns)  # raw model output is logged for every turn
        assert set(ep.recommended_items) <= titles


def test_docs_example_runs_as_py_spec(tmp_path):
    from test_rule_agents import docs_example_source

    (tmp_path / "my_agents.py").write_text(docs_example_source())
    out = tmp_path / "random"
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    simulate("--user", "rule", "--recommender", "py:my_agents:RandomRecommender", "--episodes", 6, "--out", out, env=env)
    episodes = list(read_episodes(out / "episodes.jsonl"))
    assert len(episodes) == 6
    for ep in episodes:
        assert ep.turns[1].action.value == "inquire" and ep.turns[1].text == "What kind of movie do you like?"
        assert all(t.action.value == "recommend" for t in ep.turns[3::2])


def test_bad_spec_and_bad_data_fail_clearly(tmp_path):
    bad = simulate("--user", "nonsense", "--recommender", "rule", "--out", tmp_path / "x", check=False)
    assert bad.returncode == 2 and "unknown agent kind 'nonsense'" in bad.stdout
    assert not (tmp_path / "x").exists()
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"catalogue": [], "episodes": [{"record_id": "a", "persona": {}, "target": {}}]}))
    bad = simulate("--user", "rule", "--recommender", "rule", "--data", data, "--out", tmp_path / "y", check=False)
    assert bad.returncode == 2 and "episodes[0].persona.summary" in bad.stdout.replace("\n", "")
    # specs checked before the run starts: one line, exit 2, no run folder, no traceback
    cases = [(("--user", "rule", "--recommender", "py:nonexistent:Cls"), "cannot import 'nonexistent'"),
             (("--user", "llm:/nonexistent/path", "--recommender", "rule"), "model /nonexistent/path: no such folder"),
             (("--user", "usersim:" + str(tmp_path), "--recommender", "rule"), "no config.json in it"),
             (("--user", "rule", "--recommender", "py:agents.rule_based:RuleBasedUser"), "a user agent, given as the recommender"),
             (("--user", "rule", "--recommender", "rule", "--data", tmp_path / "nope"), "folder built by 'interplay data build'")]
    for i, (args, message) in enumerate(cases):
        bad = simulate(*args, "--out", tmp_path / f"z{i}", check=False)
        text = " ".join(bad.stdout.split())
        assert bad.returncode == 2 and message in text and "Traceback" not in bad.stdout + bad.stderr, args
        assert not (tmp_path / f"z{i}").exists()
