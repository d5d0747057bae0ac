"""Evaluation end to end on hand-made records whose every figure is known in advance: real Ray,
real env, real BERTScore model, real item encoder (trained on a slice of MovieLens)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from interplay.catalogue import Catalogue, Item
from interplay.data.raw_dialogue import RawTurn, build_record
from interplay.data.schema import DialogueRecord
from interplay.episode import Persona, Target, WatchedItem
from interplay.evaluation.config import EvalConfig
from interplay.evaluation.tasks import human_decision_tasks, recommender_turn_tasks, replay_tasks, user_turn_tasks
from interplay.protocol import Action, Role, mark_title, marked_titles

ITEMS = [Item(item_id="ml:2378", title="Police Academy (1984)", attributes=("comedy", "crime", "police")),
         Item(item_id="ml:4718", title="American Pie 2 (2001)", attributes=("comedy", "teen")),
         Item(item_id="ml:5283", title="Super Troopers (2001)", attributes=("comedy", "crime", "police")),
         Item(item_id="ml:2571", title="Matrix, The (1999)", attributes=("action", "sci-fi", "cyberpunk"))]
PERSONA = Persona(summary="Likes silly comedies.", watched=[WatchedItem(title="Airplane! (1980)", text="Very funny.")])


def _t(role: Role, action: Action, text: str) -> RawTurn:
    return RawTurn(role, text, marked_titles(text), action)


U, R = Role.USER, Role.RECOMMENDER
#: Super Troopers spelt as a dialogue may spell it (a year off): only its resolved id is the target's
ST_SPELT = "Super Troopers (2002)"


def records() -> list[DialogueRecord]:
    """Built by the real record builder (titles resolved to catalogue ids, verdicts placed)."""
    pa, ap = (mark_title(i.title) for i in ITEMS[:2])
    st = mark_title(ST_SPELT)
    target = lambda i: Target(item_id=ITEMS[i].item_id, title=ITEMS[i].title, attributes=list(ITEMS[i].attributes[:2]))  # noqa: E731
    catalogue = Catalogue(ITEMS)

    def build(rid, turns, target_i=None, accepted=None, rejected=()):
        return build_record(record_id=rid, source="test", split="test", turns=turns, catalogue=catalogue,
                            accepted_title=accepted, rejected_titles=list(rejected), watched_titles=[],
                            persona=PERSONA, target=None if target_i is None else target(target_i))

    return [
        build("sr", [_t(U, Action.DISCLOSE_GOAL, "A comedy please."), _t(R, Action.RECOMMEND, f"Try {pa}."),
                     _t(U, Action.ACCEPT, "Sounds great!")], 0, ITEMS[0].title),
        build("et", [_t(U, Action.DISCLOSE_GOAL, "Something with cops."), _t(R, Action.RECOMMEND, f"Maybe {ap}?"),
                     _t(U, Action.FEEDBACK, "Not that one."), _t(R, Action.RECOMMEND, f"Then {st}."),
                     _t(U, Action.ACCEPT, "Yes!")], 2, ST_SPELT, [ITEMS[1].title]),
        build("fr", [_t(U, Action.DISCLOSE_GOAL, "A film about machines."), _t(R, Action.INQUIRE, "Old or new?"),
                     _t(U, Action.DISCLOSE_GOAL, "Fairly new."), _t(R, Action.INQUIRE, "Anything else?"),
                     _t(U, Action.FEEDBACK, "I have to go.")], 3),
        build("none", [_t(U, Action.GREETING, "Hi."), _t(R, Action.INQUIRE, "What do you like?")]),
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evaldata")
    (d / "test.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records()))
    (d / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    return d


def test_tasks_known_structure():
    recs = records()
    replay, skipped = replay_tasks(recs)
    assert [t.episode_id for t in replay] == ["replay-sr", "replay-et", "replay-fr"]
    assert [t.max_turns for t in replay] == [3, 5, 5]  # up to the user's answer to the last recorded recommender turn
    assert sum(skipped.values()) == 1
    single, _ = user_turn_tasks(recs)
    assert [(t.record_id, t.observation.turn_index, len(t.observation.history)) for t in single] == [
        ("sr", 0, 0), ("sr", 2, 2), ("et", 0, 0), ("et", 2, 2), ("et", 4, 4), ("fr", 0, 0), ("fr", 2, 2), ("fr", 4, 4)]
    rec, skipped = recommender_turn_tasks(recs)
    assert [(t.record_id, len(t.observation.history), t.target) for t in rec] == [
        ("sr", 1, "Police Academy (1984)"), ("et", 3, "Super Troopers (2001)")]
    assert skipped == {"the target is never recommended in the record": 1, "no target": 1}
    human, _ = human_decision_tasks(recs)
    # the user answers right after the judged recommendation
    assert [(t.record_id, t.extra["item"], t.extra["human_accept"], t.observation.history[-1].text) for t in human] == [
        ("sr", "Police Academy (1984)", 1, "Try <movie_title>Police Academy (1984)</movie_title>."),
        ("et", "American Pie 2 (2001)", 0, "Maybe <movie_title>American Pie 2 (2001)</movie_title>?"),
        ("et", ST_SPELT, 1, f"Then <movie_title>{ST_SPELT}</movie_title>.")]
    # the target spelt another way is still the target, by id
    assert [t.extra["slice"] for t in human] == ["target", "other-seen-unknown", "target"]
    assert human[2].extra["item_id"] == human[2].extra["target_id"] == "ml:5283"
    assert all("Police" not in t.view.model_dump_json() for t in single if t.record_id == "sr")  # no title leak


def test_evaluate_user_known_answers(data_dir, tmp_path, ray_session):
    from interplay.evaluation.evaluate import evaluate_user

    out = tmp_path / "user"
    cfg = EvalConfig(kind="user", agent="py:eval_agents:AcceptFirstUser", data=str(data_dir), out=str(out), concurrency=4)
    m = evaluate_user(cfg, progress=False)
    r = m["replay"]
    assert (r["episodes"], r["SR"], r["ET"], r["FR"]) == (3, pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert r["SR"] + r["ET"] + r["FR"] == pytest.approx(1.0)
    assert r["termination"]["accepted"] == pytest.approx(2 / 3) and r["termination"]["max_turns"] == pytest.approx(1 / 3)
    # the replay is a normal episode log: the recommender said exactly the recorded turns
    eps = {row["record_id"]: row for row in csv.DictReader((out / "episodes.csv").open())}
    assert (eps["sr"]["accepted_item"], eps["et"]["accepted_item"], eps["fr"]["outcome"]) == (
        "Police Academy (1984)", "American Pie 2 (2001)", "FR")
    s = m["single_turn"]
    assert s["n"] == 8 and s["parse_rate"] == 1.0 and s["fallback_rate"] == 0.0
    assert (r["user_parse_rate"], r["user_protocol_clean_rate"], r["user_fallback_rate"]) == (1.0, 1.0, 0.0)
    assert s["action_agreement"] == pytest.approx(6 / 8)  # wrong at et turn 2 (feedback) and fr turn 4 (feedback)
    # 5 requests of 7 words, 3 acceptances of 5 words
    assert s["words"]["mean"] == pytest.approx((5 * 7 + 3 * 5) / 8)
    assert 0 < s["bertscore_f1"]["mean"] < 1 and "minilm" in s["bertscore"]["model"].lower()
    h = m["human_view"]
    assert (h["n"], h["human_accepts"], h["agent_accepts"]) == (3, 2, 3)
    assert h["accuracy"] == pytest.approx(2 / 3) and h["balanced_accuracy"] == pytest.approx(0.5)
    assert h["confusion"] == [[0, 1], [0, 2]] and h["majority_accuracy"] == pytest.approx(2 / 3)
    for f in ("metrics.json", "single_turn.csv", "human_view.csv", "outcomes.png", "turns_to_accept.png", "action_mix.png"):
        assert (out / f).stat().st_size > 0, f
    # resuming a finished evaluation recomputes the same figures without re-running anything
    again = evaluate_user(cfg, resume=True, progress=False)
    assert again["replay"] == m["replay"] and again["human_view"] == m["human_view"]
    assert len((out / "replay" / "episodes.jsonl").read_text().splitlines()) == 3


def test_evaluate_recommender_known_answers(data_dir, tmp_path, ray_session, tiny_encoder):
    from interplay.evaluation.compare import compare
    from interplay.evaluation.evaluate import evaluate_recommender

    cfg = EvalConfig(kind="recommender", agent="py:eval_agents:PoliceAcademyRecommender", data=str(data_dir),
                     out=str(tmp_path / "rec"), matchscore_encoder=str(tiny_encoder), concurrency=2)
    m = evaluate_recommender(cfg, progress=False)
    assert m["n"] == 2 and m["recall@1"] == 0.5 and m["recall@10"] == 1.0
    rows = {r["record_id"]: r for r in csv.DictReader((tmp_path / "rec" / "recommendations.csv").open())}
    assert float(rows["sr"]["matchscore"]) == pytest.approx(1.0, abs=1e-5)  # identical items score 1.0
    assert -1 < float(rows["et"]["matchscore"]) < 0.9999
    assert m["matchscore"]["mean"] == pytest.approx((1 + float(rows["et"]["matchscore"])) / 2)
    assert m["unmatched_titles"] == 0 and m["no_recommendation"] == 0
    assert m["words"]["mean"] == 6  # "You may enjoy Police Academy (1984)."
    summary = compare([tmp_path / "rec"], tmp_path / "cmp")
    assert summary["recommender"][0]["recall@1"] == 0.5 and (tmp_path / "cmp" / "matchscore.png").exists()


def test_resume_refuses_other_settings(data_dir, tmp_path):
    from interplay.evaluation.config import prepare_eval_dir

    cfg = EvalConfig(kind="user", agent="rule", data=str(data_dir), out=str(tmp_path / "e"))
    prepare_eval_dir(cfg, resume=False)
    with pytest.raises(FileExistsError):
        prepare_eval_dir(cfg, resume=False)
    with pytest.raises(ValueError, match="limit"):
        prepare_eval_dir(cfg.model_copy(update={"limit": 2}), resume=True)
    prepare_eval_dir(cfg.model_copy(update={"concurrency": 3}), resume=True)
    # a limit may grow on resume (the first N records stay the first N), never shrink
    cfg2 = cfg.model_copy(update={"out": str(tmp_path / "e2"), "limit": 2})
    prepare_eval_dir(cfg2, resume=False)
    prepare_eval_dir(cfg2.model_copy(update={"limit": 5}), resume=True)
    with pytest.raises(ValueError, match="limit"):
        prepare_eval_dir(cfg2.model_copy(update={"limit": 3}), resume=True)
    prepare_eval_dir(cfg2.model_copy(update={"limit": None}), resume=True)
    shutil.copytree(tmp_path / "e2", tmp_path / "moved")  # a copied folder resumes where it now is
    prepare_eval_dir(cfg2.model_copy(update={"limit": None, "out": str(tmp_path / "moved")}), resume=True)
    with pytest.raises(ValueError, match="limit"):
        prepare_eval_dir(cfg2.model_copy(update={"limit": 9}), resume=True)


def test_bertscore_known_values():
    from interplay.metrics.bertscore import bertscore

    scores, info = bertscore(["I love funny police movies", "", "totally unrelated words here"],
                             ["I love funny police movies", "some reference", "a quiet drama about grief"])
    assert scores[0]["F1"] == pytest.approx(1.0, abs=1e-5) and scores[1] == {"P": 0.0, "R": 0.0, "F1": 0.0}
    assert scores[2]["F1"] < 0.9 and info["num_layers"] == 6


def test_decision_agreement_by_hand():
    from interplay.metrics.agreement import decision_agreement

    m = decision_agreement([1, 1, 1, 0, 0], [1, 0, 1, 0, 1])
    assert m["accuracy"] == pytest.approx(0.6) and m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["confusion"] == [[1, 1], [1, 2]] and m["majority_accuracy"] == pytest.approx(0.6)
    assert m["majority_balanced_accuracy"] == 0.5
    assert decision_agreement([1, 1], [1, 0])["balanced_accuracy"] is None  # one class: undefined
    assert not math.isnan(decision_agreement([0], [0])["accuracy"])
    json.dumps(m)
    # the best cut accepts p >= 0.6 (every decision right); the threshold sits halfway to the next
    # lower probability, so a score that moves by float rounding keeps its side
    t = decision_agreement([1, 1, 0, 0], [1, 1, 1, 1], [0.9, 0.6, 0.4, 0.1])
    assert t["best_threshold"] == pytest.approx(0.5) and t["best_threshold_balanced_accuracy"] == 1.0
    assert decision_agreement([0, 1], [1, 1], [0.2, 0.3])["best_threshold"] == pytest.approx(0.25)


def test_fidelity_scorecard_known_answers(data_dir, tmp_path, ray_session):
    """The rule user against a yes-sayer on the hand-made records: the rule agrees with every human
    decision and tells matching from contradicting probes; the yes-sayer scores 0.5 and a gap of 0."""
    from interplay.evaluation.fidelity import FidelityConfig, evaluate_fidelity

    out = tmp_path / "fid"
    cfg = FidelityConfig(users=["rule", "py:eval_agents:AcceptFirstUser"], data=str(data_dir), out=str(out),
                         decision="generate", concurrency=4)
    card = evaluate_fidelity(cfg, progress=False)
    rule, yes = card["agents"]
    # human: Police Academy 1, Super Troopers 1 (targets), American Pie 2 0 (covers 1 of 2 attributes < 0.6)
    assert rule["decisions"]["all"]["balanced_accuracy"]["value"] == 1.0
    assert rule["decisions"]["target"]["n"] == 2 and sum(rule["decisions"][s]["n"] for s in ("other-unseen", "other-seen", "other-seen-unknown")) == 1
    assert yes["decisions"]["all"]["balanced_accuracy"]["value"] == 0.5
    assert yes["decisions"]["all"]["kappa"]["value"] == 0.0 and yes["decisions"]["all"]["reject_f1"]["value"] == 0.0
    # probes: sr and et have a matching item (each other's film) and a contradicting one (The Matrix)
    assert rule["discrimination"]["gap"] == {"n": 2, "value": 1.0, "ci95": pytest.approx((1.0, 1.0))}
    assert yes["discrimination"]["gap"]["value"] == 0.0
    assert rule["simulator_faults"]["episodes"] == 3 and yes["simulator_faults"]["episodes"] == 3
    assert rule["likelihood"]["turns"] == 8 and rule["likelihood"]["scored_turns"] == 0  # no model to ask
    assert yes["behaviour"]["human"]["dialogues"] == 3 and rule["behaviour"]["js_words_per_turn"] is not None
    text = (out / "scorecard.md").read_text()
    assert "| rule | all | 3 (2/1) | 2 | 2 | 1.00" in text and (out / "scorecard.png").stat().st_size > 0
    assert json.loads((out / "scorecard.json").read_text())["agents"][0]["agent"] == "rule"


def test_fidelity_bad_input_is_one_line_and_writes_nothing(data_dir, tmp_path):
    from typer.testing import CliRunner

    from interplay.cli import app

    no_attrs = tmp_path / "no-attrs"
    no_attrs.mkdir()
    (no_attrs / "test.jsonl").write_text((data_dir / "test.jsonl").read_text())
    (no_attrs / "catalogue.jsonl").write_text("".join(i.model_copy(update={"attributes": ()}).model_dump_json() + "\n"
                                                      for i in ITEMS))
    no_human = tmp_path / "no-human"
    no_human.mkdir()
    (no_human / "test.jsonl").write_text(records()[2].model_dump_json() + "\n")
    (no_human / "catalogue.jsonl").write_text((data_dir / "catalogue.jsonl").read_text())
    cases = [(["--user", "nonsense-kind", "--data", str(data_dir)], "nonsense-kind"),
             (["--user", "rule", "--data", str(no_human)], "no human accept/reject decision"),
             (["--user", "rule", "--data", str(no_attrs)], "no item has attributes")]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        result = CliRunner().invoke(app, ["evaluate", "fidelity", *args, "--out", str(out)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()
