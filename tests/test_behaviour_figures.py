"""Behaviour figures (interplay.metrics.behaviour) against values worked out by hand, on a
simulated episode and on the human dialogue of the record it drew from."""

from __future__ import annotations

import json

import pytest

from interplay.data.schema import DialogueRecord, Persona, RecordTurn, Target
from interplay.episode_log import EpisodeLog, Termination, TurnLog
from interplay.metrics.behaviour import (
    behaviour_beside_people,
    behaviour_figures,
    copied_share,
    episode_dialogue,
    repeated_share,
)
from interplay.protocol import Action, Role

U, R = Role.USER, Role.RECOMMENDER
LOOP = "The movie is about a genius. The movie is about a genius."
TARGET = Target(item_id="ml:1", title="Airplane! (1980)", attributes=["comedy"])


def episode(record_id: str = "r1") -> EpisodeLog:
    """The degenerate conversation of issue 35: the recommender loops, the user copies it."""
    said = [(U, Action.DISCLOSE_GOAL, "I want a movie about a genius"), (R, Action.FEEDBACK, LOOP),
            (U, Action.FEEDBACK, "The movie is about a genius."), (R, Action.FEEDBACK, LOOP)]
    turns = [TurnLog(index=i, role=role, action=a, text=t) for i, (role, a, t) in enumerate(said)]
    turns.append(TurnLog(index=4, role=U, action=None, text=None, parse_error="unparsed"))  # never counted
    return EpisodeLog(episode_id="e1", record_id=record_id, source="t", seed=0, user_spec="u", recommender_spec="r",
                      persona=Persona(summary="Likes comedies."), target=TARGET, turns=turns,
                      termination=Termination.MAX_TURNS, num_turns=5)


def record(rid: str, extra: bool = False) -> DialogueRecord:
    turns = [RecordTurn(role=U, action=Action.GREETING, text="Hi, I like comedies"),
             RecordTurn(role=R, action=Action.RECOMMEND, text="Have you seen <movie_title>Airplane! (1980)</movie_title>?",
                        titles=["Airplane! (1980)"]),
             RecordTurn(role=U, action=Action.FEEDBACK, text="I have seen it")]
    if extra:
        turns.append(RecordTurn(role=R, action=Action.FEEDBACK, text="I have seen it"))
    return DialogueRecord(id=rid, source="t", split="test", persona=Persona(summary="Likes comedies."), target=TARGET,
                          turns=turns)


def test_turn_figures_by_hand():
    # 12 words, 10 trigrams of which 6 distinct: 4 repeat an earlier one
    assert repeated_share(LOOP) == pytest.approx(0.4)
    assert repeated_share("a b") is None and repeated_share("a b c") == 0.0
    # "about a genius" twice among the loop's 10 trigrams occurs in the user's turn
    assert copied_share(LOOP, "I want a movie about a genius") == pytest.approx(0.2)
    assert copied_share("The movie is about a genius.", LOOP) == 1.0
    assert copied_share("hi", LOOP) is None


def test_episode_figures_by_hand():
    figs = behaviour_figures([episode_dialogue(episode())])
    assert figs["episodes"] == 1 and figs["turns_per_episode"] == 4  # parsed turns
    user, rec = figs["user"], figs["recommender"]
    assert user == {"turns": 2, "repeated_ngram_share": 0.0, "copied_share": 1.0, "self_repeat_rate": 0.0,
                    "words_per_turn": 6.5}
    # copied: 2/10 of the first loop from the user's goal, 8/10 of the second from "The movie is about a genius."
    assert rec["repeated_ngram_share"] == pytest.approx(0.4) and rec["copied_share"] == pytest.approx(0.5)
    assert rec["self_repeat_rate"] == 1.0 and rec["words_per_turn"] == 12 and rec["turns"] == 2


def test_human_values_come_from_the_records_the_run_used():
    both = behaviour_beside_people([episode("r1")], [record("r1"), record("unused", extra=True)])
    human = both["human"]
    assert human["episodes"] == 1 and human["turns_per_episode"] == 3  # only r1
    assert human["user"] == {"turns": 2, "repeated_ngram_share": 0.0, "copied_share": 0.0, "self_repeat_rate": 0.0,
                             "words_per_turn": 4.0}
    # one recommender turn: nothing before it to repeat, nothing copied ("have you seen" is not the user's)
    assert human["recommender"] == {"turns": 1, "repeated_ngram_share": 0.0, "copied_share": 0.0,
                                    "self_repeat_rate": None, "words_per_turn": 5.0}
    assert both["simulated"] == behaviour_figures([episode_dialogue(episode())])
    assert behaviour_beside_people([episode("r9")], [record("r1")])["human"] is None


def test_run_metrics_hold_the_figures_and_the_human_values_of_the_runs_split(tmp_path):
    from interplay.evaluation.run_report import human_behaviour
    from interplay.metrics.registry import RUN_METRICS

    eps = [episode("r1")]
    assert RUN_METRICS["behaviour"].fn(eps) == behaviour_figures([episode_dialogue(eps[0])])
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text(record("r1").model_dump_json() + "\n" + record("r2", extra=True).model_dump_json()
                                     + "\n")
    run = tmp_path / "run"
    run.mkdir()
    assert human_behaviour(run, eps) is None  # no config: nothing to compare with
    (run / "config.json").write_text(json.dumps({"data": str(data), "split": "test"}))
    human = human_behaviour(run, eps)
    assert human["split"] == "test" and human["turns_per_episode"] == 3 and human["user"]["words_per_turn"] == 4.0
    (run / "config.json").write_text(json.dumps({"data": "demo", "split": "test"}))
    assert human_behaviour(run, eps) is None  # the demo set has no human dialogues


def test_the_scorecard_puts_the_figures_beside_peoples():
    from interplay.evaluation.behaviour_profile import behaviour_profile

    # the human side runs to the answer to the last recommender turn (here: the whole dialogue)
    prof = behaviour_profile([episode("r1")], [record("r1", extra=True)])
    assert prof["figures"]["human"]["turns_per_episode"] == 4
    assert prof["figures"]["human"]["recommender"]["copied_share"] == pytest.approx(0.5)  # (0 + 2/2) / 2
    assert prof["figures"]["simulated"]["user"]["copied_share"] == 1.0
    from interplay.evaluation.scorecard import beside as _beside

    assert _beside(prof["figures"], "copied_share", "user") == "1.000 / 0.000"
    assert _beside(prof["figures"], "turns_per_episode") == "4.000 / 4.000"


def test_the_scorecard_table_of_behaviour_figures():
    from interplay.evaluation.behaviour_profile import behaviour_profile
    from interplay.evaluation.scorecard import scorecard_markdown
    from interplay.metrics.fidelity import SLICES

    agent = {"agent": "usersim:x", "decisions": {s: {} for s in ("all", *SLICES)}, "discrimination": None,
             "hint_use": None, "likelihood": None, "behaviour": behaviour_profile([episode("r1")], [record("r1")]),
             "simulator_faults": {"episodes": 1, "any_fault": 0.0, "failed_runs_simulator_share": 0.0, "kinds": {}},
             "replay": {"SR": 0.0, "ET": 0.0, "FR": 1.0}}
    md = scorecard_markdown({"config": {"data": "d", "split": "test"}, "agents": [agent], "downstream": []})
    row = next(line for line in md.splitlines() if line.startswith("| usersim:x | 0.000 / 0.000 | 1.000 / 0.000"))
    # self-repeats, words per user turn, turns per dialogue (simulated: 4 parsed turns; human: 3)
    assert row.endswith("| 0.000 / 0.000 | 6.500 / 4.000 | 4.000 / 3.000 |")
