"""Known-answer tests of the metrics, computed by hand, and the run report."""

import csv
import json

import pytest

from interplay.episode import Persona, Target
from interplay.episode_log import EpisodeLog, EpisodeLogWriter, Termination, TurnLog
from interplay.metrics import (
    action_distribution,
    dist_n,
    outcome_class,
    recall_at_k,
    summarize_values,
    termination_mix,
    turns_to_accept,
    words,
)
from interplay.evaluation.run_report import evaluate_run
from interplay.protocol import Action, Role


def test_dist_n_by_hand():
    # "a b c d e" has 4-grams (abcd, bcde); "a b c d" has (abcd): 2 distinct of 3
    assert dist_n(["a b c d e", "A b, c d!"], 4) == pytest.approx(2 / 3)
    # 2-grams: "x y x y" -> xy, yx, xy -> 2 distinct of 3; n-grams never span texts
    assert dist_n(["x y x y"], 2) == pytest.approx(2 / 3)
    assert dist_n(["x y", "z w"], 4) == 0.0 and dist_n([], 4) == 0.0
    # title markup is not a word
    assert dist_n(["see <movie_title>Heat (1995)</movie_title> now"], 4) == 1.0


def test_words():
    assert words("You may enjoy <movie_title>Heat (1995)</movie_title>!") == 5
    assert words("") == 0


#: one catalogue's ids of the titles below, as a run's environment resolves them when it logs a turn
IDS = {"heat (1995)": "x:1", "Heat (1995)": "x:1", "HEAT  (1995)": "x:1", "Ronin (1998)": "x:2",
       "Heat, The (1995)": "x:3"}


def ep(i, termination, accepted=None, target="Heat (1995)", turns=(), accepted_id=None):
    return EpisodeLog(episode_id=f"e{i}", record_id="r", source="t", seed=0, user_spec="u", recommender_spec="r",
                      persona=Persona(summary="s"), target=Target(item_id="x:1", title=target), turns=list(turns),
                      termination=termination, num_turns=len(turns) or 4, accepted_item=accepted,
                      accepted_item_id=accepted_id or IDS.get(accepted))


def t(role, action, text, i=0):
    return TurnLog(index=i, role=role, action=action, text=text)


def test_sr_et_fr_are_exclusive_and_sum_to_one():
    eps = [ep(0, Termination.ACCEPTED, "heat (1995)"), ep(1, Termination.ACCEPTED, "Ronin (1998)"),
           ep(2, Termination.MAX_TURNS), ep(3, Termination.PROTOCOL_ERROR), ep(4, Termination.ACCEPTED, "Heat, The (1995)"),
           ep(5, Termination.ACCEPTED, "HEAT  (1995)")]
    classes = [outcome_class(e) for e in eps]
    # "Heat, The (1995)" is "The Heat": another film (another id), so an early termination
    assert classes == ["SR", "ET", "FR", "FR", "ET", "SR"]
    # the target spelt as the catalogue spells another film's title, but resolved to the target's id: SR;
    # the target's own spelling resolved to another id: ET. Ids decide, never titles.
    assert outcome_class(ep(6, Termination.ACCEPTED, "Black Panther (2018)", "Black Panther (2017)", accepted_id="x:1")) == "SR"
    assert outcome_class(ep(7, Termination.ACCEPTED, "Heat (1995)", accepted_id="x:9")) == "ET"
    shares = {k: classes.count(k) / len(classes) for k in ("SR", "ET", "FR")}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_a_log_without_item_ids_is_refused_not_scored_by_title():
    turns = [TurnLog(index=0, role=Role.RECOMMENDER, action=Action.RECOMMEND,
                     text="Try <movie_title>Heat (1995)</movie_title>", titles=["Heat (1995)"]),
             TurnLog(index=1, role=Role.USER, action=Action.ACCEPT, text="ok")]
    old = ep(0, Termination.ACCEPTED, "Heat (1995)", turns=turns).model_copy(update={"accepted_item_id": None})
    with pytest.raises(ValueError, match="no item ids"):
        outcome_class(old)


def test_termination_mix_and_turns_to_accept():
    eps = [ep(0, Termination.ACCEPTED, "Heat (1995)"), ep(1, Termination.MAX_TURNS), ep(2, Termination.MAX_TURNS),
           ep(3, Termination.AGENT_ERROR)]
    assert termination_mix(eps) == {"accepted": 0.25, "max_turns": 0.5, "protocol_error": 0.0, "agent_error": 0.25}
    assert turns_to_accept(eps[0]) == 4 and turns_to_accept(eps[1]) is None


def test_action_distribution():
    turns = [t(Role.USER, Action.DISCLOSE_GOAL, "a"), t(Role.RECOMMENDER, Action.INQUIRE, "b"),
             t(Role.USER, Action.FEEDBACK, "c"), t(Role.RECOMMENDER, Action.RECOMMEND, "<movie_title>X</movie_title>"),
             t(Role.USER, Action.FEEDBACK, "d"), TurnLog(index=5, role=Role.RECOMMENDER, action=None, text=None)]
    d = action_distribution([ep(0, Termination.PROTOCOL_ERROR, turns=turns)])
    assert d["user"]["feedback"] == pytest.approx(2 / 3) and d["user"]["disclose-goal"] == pytest.approx(1 / 3)
    assert d["recommender"]["inquire"] == 0.5 and d["recommender"]["recommend"] == 0.5  # the unparsed turn not counted


def test_recall_at_k():
    ranked = ["x:2", "x:1", "x:7"]
    assert recall_at_k(ranked, "x:1", 1) == 0.0
    assert recall_at_k(ranked, "x:1", 2) == 1.0
    assert recall_at_k([None, "x:1"], "x:1", 1) == 0.0


def test_summary():
    s = summarize_values([1, 2, 3, None, 6])
    assert (s.count, s.mean, s.min, s.max) == (4, 3.0, 1.0, 6.0)
    assert s.std == pytest.approx((((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4) ** 0.5)
    assert summarize_values([None]).count == 0


def test_evaluate_run_writes_metrics_csv_and_plots(tmp_path):
    run = tmp_path / "run"
    turns = [t(Role.USER, Action.DISCLOSE_GOAL, "I want a heist film", 0),
             t(Role.RECOMMENDER, Action.RECOMMEND, "Try <movie_title>Heat (1995)</movie_title>", 1),
             t(Role.USER, Action.ACCEPT, "Great, I will watch it", 2)]
    with EpisodeLogWriter(run) as w:
        w.write(ep(0, Termination.ACCEPTED, "Heat (1995)", turns=turns))
        w.write(ep(1, Termination.MAX_TURNS, turns=turns[:2]))
    m = evaluate_run(run)
    assert m["outcome"] == {"SR": 0.5, "ET": 0.0, "FR": 0.5}
    assert m["turns_to_accept"]["mean"] == 3.0 and m["num_turns"]["mean"] == 2.5
    # user texts: "i want a heist film" (x2: 2 distinct 4-grams, 4 total) + "great i will watch it" (2)
    assert m["dist4"]["user"] == pytest.approx(4 / 6)
    assert m["words"]["recommender"]["mean"] == 3.0  # "try heat 1995"
    rows = list(csv.DictReader((run / "eval" / "episodes.csv").open()))
    assert [r["outcome"] for r in rows] == ["SR", "FR"]
    assert json.loads((run / "eval" / "metrics.json").read_text())["episodes"] == 2
    for png in ("turns_to_accept.png", "action_mix.png"):
        assert (run / "eval" / png).read_bytes()[:4] == b"\x89PNG"


def test_docs_metric_example_registers_and_lands_in_the_report(tmp_path):
    """docs/metrics.md's example, run as written: both metrics appear in metrics.json and the CSV."""
    import re
    from pathlib import Path

    from interplay.metrics.registry import unregister_metric

    text = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "register_episode_metric" in b)
    exec(compile(block, "docs/metrics.md", "exec"), {})
    try:
        run = tmp_path / "run"
        asked = [t(Role.USER, Action.DISCLOSE_GOAL, "a heist film", 0), t(Role.RECOMMENDER, Action.INQUIRE, "Any actor?", 1),
                 t(Role.USER, Action.DISCLOSE_GOAL, "De Niro", 2),
                 t(Role.RECOMMENDER, Action.RECOMMEND, "Try <movie_title>Heat (1995)</movie_title>", 3),
                 t(Role.USER, Action.ACCEPT, "Great", 4)]
        direct = [t(Role.USER, Action.DISCLOSE_GOAL, "a heist film", 0),
                  t(Role.RECOMMENDER, Action.RECOMMEND, "Try <movie_title>Ronin (1998)</movie_title>", 1)]
        with EpisodeLogWriter(run) as w:
            w.write(ep(0, Termination.ACCEPTED, "Heat (1995)", turns=asked).model_copy(
                update={"recommended_items": ["Heat (1995)", "Ronin (1998)"]}))
            w.write(ep(1, Termination.MAX_TURNS, turns=direct).model_copy(update={"recommended_items": ["Ronin (1998)"]}))
            w.write(ep(2, Termination.MAX_TURNS, turns=asked[:2]))
        m = evaluate_run(run, plots=False)
        # by hand: episode 0 accepted after 2 recommended titles; the others accepted nothing
        assert m["recommendations_before_accept"] == {"count": 1, "mean": 2.0, "std": 0.0, "min": 2.0, "max": 2.0}
        # by hand: e0 asks before recommending; e1 recommends at once; e2 never recommends
        assert m["share_asking_first"] == pytest.approx(1 / 3)
        rows = list(csv.DictReader((run / "eval" / "episodes.csv").open()))
        assert [r["recommendations_before_accept"] for r in rows] == ["2", "", ""]
    finally:
        unregister_metric("recommendations_before_accept")
        unregister_metric("share_asking_first")
    assert "share_asking_first" not in evaluate_run(run, out=tmp_path / "again", plots=False)
