"""The fidelity scorecard's figures: known answers computed by hand, the probes' property over every
record, simulator faults, and a sanity check that can fail (the rule user discriminates, a
yes-sayer does not)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from interplay.catalogue import Catalogue, Item
from interplay.data.schema import DialogueRecord
from interplay.episode import Persona, Target
from interplay.episode_log import EpisodeLog, Termination, TurnLog
from interplay.evaluation.probes import PROBES, attribute_match, discrimination, probe_item, probe_tasks
from interplay.evaluation.simulator_faults import episode_faults, refuses_attribute, simulator_fault_rate
from interplay.metrics.agreement import balanced_accuracy_interval
from interplay.metrics.fidelity import (
    balanced_accuracy,
    cohen_kappa,
    decision_figures,
    decision_slice,
    js_divergence,
    paired_bootstrap,
    reject_f1,
    sliced_decision_figures,
)
from interplay.protocol import Action, Role, mark_title

HUMAN = [1, 1, 0, 0, 1, 0]
AGENT = [1, 0, 0, 1, 1, 0]


def test_kappa_and_reject_f1_known_answers():
    # agreement 4/6; both accept half the items, so chance agreement 0.5: kappa (4/6 - 0.5) / 0.5 = 1/3
    assert cohen_kappa(HUMAN, AGENT) == pytest.approx(1 / 3)
    # reject class: humans reject items 2, 3, 5; the agent 1, 2, 5: precision 2/3, recall 2/3
    assert reject_f1(HUMAN, AGENT) == pytest.approx(2 / 3)
    assert balanced_accuracy(HUMAN, AGENT) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None and reject_f1([1, 1], [0, 1]) is None
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, f1_score

    rng = np.random.default_rng(1)
    for _ in range(20):  # and sklearn agrees on random decisions
        h, a = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
        assert cohen_kappa(h, a) == pytest.approx(cohen_kappa_score(h, a))
        assert reject_f1(h, a) == pytest.approx(f1_score(h, a, pos_label=0))
        assert balanced_accuracy(h, a) == pytest.approx(balanced_accuracy_score(h, a))
    assert balanced_accuracy([1, 1], [1, 0]) is None
    yes = [1] * len(HUMAN)
    assert cohen_kappa(HUMAN, yes) == 0.0 and reject_f1(HUMAN, yes) == 0.0 and balanced_accuracy(HUMAN, yes) == 0.5


def test_js_divergence_known_answers():
    assert js_divergence({"a": 3}, {"b": 5}) == pytest.approx(1.0)
    assert js_divergence({"a": 2, "b": 2}, {"b": 1, "a": 1}) == pytest.approx(0.0, abs=1e-12)
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4)
    kl_pm = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_qm = math.log2(1 / 0.75)
    assert js_divergence({"a": 1, "b": 1}, {"a": 7}) == pytest.approx((kl_pm + kl_qm) / 2)
    assert js_divergence({}, {"a": 1}) is None


def test_bootstrap_known_answers():
    assert paired_bootstrap(lambda x: x.mean(-1), [0.4] * 9) == pytest.approx((0.4, 0.4))
    data = [0, 1, 1, 0, 1, 1, 1, 0]
    idx = np.random.default_rng(5).integers(0, len(data), size=(300, len(data)))
    means = np.asarray(data)[idx].mean(1)
    assert paired_bootstrap(lambda x: x.mean(-1), data, resamples=300, seed=5) == \
        pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    # paired resampling of a two-column statistic is the balanced-accuracy interval of the report
    human = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    agent = [1, 0, 0, 1, 1, 0, 1, 1, 1, 1]
    assert paired_bootstrap(balanced_accuracy, human, agent) == pytest.approx(balanced_accuracy_interval(human, agent))
    assert paired_bootstrap(np.mean, [1]) is None


def test_decision_figures_with_slices_and_majority():
    rows = [  # (record, slice, human, agent): slices come from the record's provenance, not from titles
        ("r1", "target", 1, 1), ("r2", "target", 1, 1),
        ("r1", "other-unseen", 0, 1), ("r2", "other-unseen", 1, 0), ("r3", "other-unseen", 0, 0),
        ("r4", "no-target", 0, 0), ("r5", "no-target", 0, 1)]
    dicts = [{"task_id": f"t{i}", "record_id": r, "slice": sl, "human_accept": y, "accept": a}
             for i, (r, sl, y, a) in enumerate(rows)]
    assert [decision_slice(d) for d in dicts] == ["target"] * 2 + ["other-unseen"] * 3 + ["no-target"] * 2
    s = sliced_decision_figures(dicts)
    assert s["all"]["n"] == 7 and s["all"]["dialogues"] == 5 and s["target"]["n"] == 2
    assert s["no-target"]["human_rejects"] == 2 and s["other-seen"]["n"] == 0
    other = s["other-unseen"]
    # humans (reject, accept, reject), agent (accept, reject, reject): recalls 0 and 1/2; reject F1 2*1/(2+1+1)
    assert other["balanced_accuracy"]["value"] == pytest.approx(0.25) and other["reject_f1"]["value"] == pytest.approx(0.5)
    # majority (reject, 2 of 3) scored the same way: balanced accuracy 0.5, kappa 0, reject F1 2/(2+1.5)
    assert other["balanced_accuracy"]["majority"] == 0.5 and other["kappa"]["majority"] == 0.0
    assert other["reject_f1"]["majority"] == pytest.approx(0.8)
    assert s["target"]["balanced_accuracy"]["value"] is None  # one human class there
    with pytest.raises(ValueError, match="2 human decisions but 1"):
        decision_figures([1, 0], [1])
    with pytest.raises(ValueError, match="no decision slice"):  # never recomputed from titles
        decision_slice({"task_id": "t", "item": "Heat (1995)", "target": "Heat (1995)", "has_target": True})


def test_cluster_bootstrap_resamples_dialogues_and_ignores_row_order():
    """Known answer: with clusters, a resample is a draw of whole dialogues (computed here by hand
    from the same generator), and shuffling the rows changes nothing."""
    human = [1, 1, 0, 1, 0, 0, 1, 0]
    agent = [1, 0, 0, 1, 1, 0, 1, 1]
    dialogues = ["a", "a", "a", "b", "c", "c", "d", "d"]
    members = {"a": [0, 1, 2], "b": [3], "c": [4, 5], "d": [6, 7]}
    keys = sorted(members)
    draws = np.random.default_rng(3).integers(0, 4, size=(400, 4))
    h, a = np.asarray(human, float), np.asarray(agent, float)
    values = []
    for row in draws:
        pick = [i for j in row for i in members[keys[j]]]
        v = balanced_accuracy(h[pick], a[pick])
        if v is not None and not np.isnan(v):
            values.append(v)
    expected = tuple(np.percentile(values, [2.5, 97.5]))
    got = paired_bootstrap(balanced_accuracy, human, agent, clusters=dialogues, resamples=400, seed=3)
    assert got == pytest.approx(expected)
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    shuffled = paired_bootstrap(balanced_accuracy, [human[i] for i in order], [agent[i] for i in order],
                                clusters=[dialogues[i] for i in order], resamples=400, seed=3)
    assert shuffled == pytest.approx(got)
    # the same rows as independent items give another (narrower here) interval: dialogues matter
    assert paired_bootstrap(balanced_accuracy, human, agent, resamples=400, seed=3) != pytest.approx(got)
    # the report's figures do not depend on the order rows were written in
    rows = [{"task_id": f"t{i}", "record_id": d, "slice": "other-unseen", "human_accept": y, "accept": x}
            for i, (d, y, x) in enumerate(zip(dialogues, human, agent))]
    assert sliced_decision_figures(rows) == sliced_decision_figures(list(reversed(rows)))


def test_looked_up_slice_keeps_described_targets_and_no_target_items():
    """The looked-up slice: items the catalogue describes that are the target or lie in a dialogue
    without one; known answer through the real-human view's metrics."""
    from interplay.evaluation.agent_report import human_view_metrics
    from interplay.metrics.fidelity import LOOKED_UP, looked_up

    rows = [  # (slice, item_facts, human, agent action)
        ("target", True, 1, "accept"), ("target", True, 1, "feedback"),
        ("target", False, 1, "feedback"),  # not described: out
        ("other-unseen", True, 1, "feedback"),  # another item: out
        ("no-target", True, 0, "feedback"), ("no-target", True, 0, "accept"),
        ("no-target", False, 0, "accept")]  # not described: out
    dicts = [{"task_id": f"t{i}", "record_id": f"r{i}", "slice": sl, "item_facts": f, "human_accept": y,
              "action": a, "p_accept": 0.5} for i, (sl, f, y, a) in enumerate(rows)]
    assert [looked_up(d) for d in dicts] == [True, True, False, False, True, True, False]
    m = human_view_metrics(dicts)
    sub = m["slices"][LOOKED_UP]
    # 4 items: accepts 1 of 2 humans' accepts, rejects 1 of 2 humans' rejects: (1/2 + 1/2) / 2
    assert sub["n"] == 4 and sub["human_rejects"] == 2 and sub["balanced_accuracy"]["value"] == pytest.approx(0.5)
    assert m["slices"]["other-unseen"]["n"] == 1 and "all" not in m["slices"]
    assert LOOKED_UP not in sliced_decision_figures([{k: v for k, v in d.items() if k != "item_facts"} | {"accept": True}
                                                      for d in dicts])  # rows that do not say: no slice


ITEMS = [Item(item_id="ml:6", title="Heat (1995)", attributes=("action", "crime", "heist")),
         Item(item_id="ml:3", title="Ronin (1998)", attributes=("action", "crime", "thriller")),
         Item(item_id="ml:1", title="Toy Story (1995)", attributes=("animation", "children", "comedy")),
         Item(item_id="ml:2", title="Notebook, The (2004)", attributes=("romance", "drama")),
         Item(item_id="ml:7", title="Heat (1986)", attributes=("action",))]
CATALOGUE = Catalogue(ITEMS)
HEAT = Target(item_id="ml:6", title="Heat (1995)", attributes=["action", "crime", "heist"])


def test_probe_items_known_answer():
    rng = random.Random(0)
    assert probe_item("matching", HEAT, CATALOGUE, rng).title == "Ronin (1998)"  # 2 of 3, the target excluded
    assert attribute_match(ITEMS[1], HEAT) == pytest.approx(2 / 3)
    assert {probe_item("contradicting", HEAT, CATALOGUE, random.Random(s)).title for s in range(20)} == \
        {"Toy Story (1995)", "Notebook, The (2004)"}
    assert probe_item("popular", HEAT, CATALOGUE, rng, ["Heat (1995)", "Notebook, The (2004)"]).title == \
        "Notebook, The (2004)"
    assert probe_item("popular", HEAT, CATALOGUE, rng, []) is None
    with pytest.raises(ValueError, match="unknown probe 'bad'"):
        probe_item("bad", HEAT, CATALOGUE, rng)


def test_probes_never_recommend_the_target_in_any_record_of_any_source(built_sources):
    from interplay.data.build import read_catalogue, read_records

    probed = 0
    for source in ("redial", "inspired"):
        catalogue = read_catalogue(built_sources / source)
        records = read_records(built_sources / source)
        popular = [it.title for it in list(catalogue)[:50]]
        tasks, _ = probe_tasks(records, catalogue, popular=popular)
        for t in tasks:
            probed += 1
            rec = t.observation.history[-1]
            assert rec.role is Role.RECOMMENDER and rec.titles == [t.extra["item"]]
            assert t.extra["item_id"] != t.extra["target_id"], t.task_id
            record = next(r for r in records if r.id == t.record_id)
            assert all(record.item_id(x) != t.extra["target_id"] for h in t.observation.history[:-1]
                       if h.role is Role.RECOMMENDER for x in h.titles)  # the probe replaces the first recommendation
            if t.extra["probe"] == "contradicting":
                assert t.extra["attribute_match"] == 0.0
        by_record: dict = {}
        for t in tasks:
            by_record.setdefault(t.record_id, {})[t.extra["probe"]] = t.extra["attribute_match"]
        assert all(v["matching"] >= max(v.values()) for v in by_record.values() if "matching" in v)
    assert probed > 1000


def _record(i: int, judged=None) -> DialogueRecord:
    """The human rejects Toy Story and accepts Heat, the target; the dialogue spells Heat "Heat
    (1996)" (a year off by one, as ReDial does), so only the item id says it is the target."""
    from interplay.data.raw_dialogue import RawTurn, build_record

    turns = [RawTurn(Role.USER, "A crime film, please.", [], Action.DISCLOSE_GOAL),
             RawTurn(Role.RECOMMENDER, f"Try {mark_title('Toy Story (1995)')}.", ["Toy Story (1995)"], Action.RECOMMEND),
             RawTurn(Role.USER, "Not for me.", [], Action.FEEDBACK),
             RawTurn(Role.RECOMMENDER, f"Then {mark_title('Heat (1996)')}.", ["Heat (1996)"], Action.RECOMMEND),
             RawTurn(Role.USER, "Great.", [], Action.ACCEPT),
             RawTurn(Role.RECOMMENDER, f"Or {mark_title('Ronin (1998)')}, later.", ["Ronin (1998)"], Action.RECOMMEND),
             RawTurn(Role.USER, "Maybe.", [], Action.FEEDBACK)]
    return build_record(record_id=f"r{i}", source="test", split="test", turns=turns, catalogue=CATALOGUE,
                        accepted_title="Heat (1996)", rejected_titles=["Toy Story (1995)"], watched_titles=[],
                        persona=Persona(summary="Likes crime."), target=HEAT, judged=judged)


def _decide(tasks) -> list[bool]:
    from agents.rule_based import RuleBasedUser

    out = []
    for t in tasks:
        user = RuleBasedUser(catalogue=CATALOGUE, seed=0)
        user.reset(t.view)
        out.append(user.act(t.observation).action is Action.ACCEPT)
    return out


def test_the_rule_user_discriminates_and_a_yes_sayer_does_not():
    """Can fail: the rule user's matching-vs-contradicting gap is large and positive, and a user
    that accepts everything gets a gap of zero and a balanced accuracy of 0.5, in one scorecard."""
    from interplay.evaluation.tasks import human_decision_tasks

    records = [_record(i) for i in range(8)]
    probes, skipped = probe_tasks(records, CATALOGUE, popular=["Notebook, The (2004)"])
    assert len(probes) == 8 * (len(PROBES) - 2)  # without ratings the two co-rated probes are left out, counted
    assert skipped == {"no co-liked item (no MovieLens ratings given)": 8,
                       "no co-disliked item (no MovieLens ratings given)": 8}
    rule_rows = [{"record_id": t.record_id, "probe": t.extra["probe"], "accept": a,
                  "attribute_match": t.extra["attribute_match"]} for t, a in zip(probes, _decide(probes))]
    yes_rows = [{**r, "accept": True} for r in rule_rows]
    rule, yes = discrimination(rule_rows), discrimination(yes_rows)
    assert rule["gap"]["value"] == 1.0 and rule["gap"]["n"] == 8 and rule["match_auc"] == 1.0
    assert rule["rates"]["contradicting"]["accept_rate"] == 0.0 and rule["rates"]["matching"]["accept_rate"] == 1.0
    assert yes["gap"]["value"] == 0.0 and yes["match_auc"] is None
    assert yes["rates"]["matching"]["accept_rate"] == yes["rates"]["contradicting"]["accept_rate"] == 1.0
    human, _ = human_decision_tasks(records)
    labels = [t.extra["human_accept"] for t in human]
    assert labels == [0, 1] * 8  # Toy Story rejected, then Heat accepted, in each record
    assert decision_figures(labels, _decide(human))["balanced_accuracy"]["value"] == 1.0
    assert decision_figures(labels, [1] * len(labels))["balanced_accuracy"]["value"] == 0.5


def _episode(user_texts: list[tuple[Action, str]], rec_titles: list[list[str]], termination=Termination.ACCEPTED,
             accepted: str | None = None) -> EpisodeLog:
    turns = []
    for i, ((action, text), titles) in enumerate(zip(user_texts, rec_titles)):
        rec_text = " and ".join(mark_title(t) for t in titles) or "What do you like?"
        turns.append(TurnLog(index=2 * i, role=Role.RECOMMENDER, action=Action.RECOMMEND if titles else Action.INQUIRE,
                             text=rec_text, titles=titles))
        turns.append(TurnLog(index=2 * i + 1, role=Role.USER, action=action, text=text))
    for t in turns:  # ids as the environment resolves them when it logs a turn
        t.item_ids = [it.item_id if (it := CATALOGUE.resolve(x)) else None for x in t.titles]
    accepted_id = CATALOGUE.resolve(accepted).item_id if accepted and CATALOGUE.resolve(accepted) else None
    return EpisodeLog(episode_id=f"e{random.random()}", record_id="r", source="t", seed=0, user_spec="rule",
                      recommender_spec="rule", persona=Persona(summary="x"), target=HEAT, turns=turns,
                      termination=termination, num_turns=len(turns), accepted_item=accepted,
                      accepted_item_id=accepted_id)


def test_simulator_faults_known_answers():
    assert refuses_attribute("I really don't like crime films", "crime")
    assert refuses_attribute("No heist movies, please", "heist") and not refuses_attribute("I love crime", "crime")
    clean = _episode([(Action.DISCLOSE_GOAL, "A crime film?"), (Action.ACCEPT, "Yes!")], [[], ["Ronin (1998)"]],
                     accepted="Ronin (1998)")
    assert episode_faults(clean) == []
    early = _episode([(Action.ACCEPT, "Sure.")], [[]])
    assert episode_faults(early) == ["ended_before_recommendation"]
    late = _episode([(Action.FEEDBACK, "Hmm."), (Action.ACCEPT, "OK.")], [["Up (2009)"], []])
    assert episode_faults(late) == ["accept_without_recommendation"]
    leaky = _episode([(Action.DISCLOSE_GOAL, "Something like Heat, I hate crime"), (Action.DISCLOSE_GOAL,
                      "something like heat, I hate crime!")], [[], []], termination=Termination.MAX_TURNS)
    assert episode_faults(leaky) == ["target_leak", "repeats_itself", "contradicts_target"]
    named = _episode([(Action.DISCLOSE_GOAL, "A crime film?"), (Action.ACCEPT, "Heat, yes!")], [[], ["Heat (1996)"]],
                     accepted="Heat (1996)")  # the target, spelt another way
    assert episode_faults(named) == []  # the recommender named the target first
    rate = simulator_fault_rate([clean, early, late, leaky])
    assert rate["any_fault"] == 0.75 and rate["kinds"]["target_leak"]["examples"] == [leaky.episode_id]
    # the clean episode accepted Ronin, not the target: four failed runs, three of them the simulator's fault
    assert rate["failed_runs"] == 4 and rate["failed_runs_simulator_share"] == 0.75


def test_behaviour_profile_known_answer():
    from interplay.evaluation.behaviour_profile import compare_profiles, noncommittal, profile

    assert noncommittal("Whatever, I'm open to anything!") and noncommittal("I don't mind.")
    assert not noncommittal("I want a heist film") and not noncommittal("whatevers")
    people = profile([[("disclose-goal", "Honestly, whatever you like"), ("accept", "Yes, that one.")],
                      [("disclose-goal", "Funny movies with lots of explosions and car chases please")]])
    assert people["actions_by_position"] == {"1:disclose-goal": 2, "2:accept": 1}
    assert people["turns_per_dialogue"] == {"2": 1, "1": 1}
    assert people["words_per_turn"] == {"3-5": 2, "6-10": 1} and people["noncommittal_share"] == pytest.approx(1 / 3)
    sim = profile([[("accept", "Yes.")], [("accept", "Sure.")]])
    cmp = compare_profiles(sim, people)
    # actions: sim all "1:accept", people (2/3, 1/3) on other keys: disjoint
    assert cmp["js_actions_by_position"] == pytest.approx(1.0)
    # turns per dialogue: sim {1: 1}, people {1: 1/2, 2: 1/2}
    m = (0.75, 0.25)
    kl_p = 0.5 * math.log2(0.5 / m[0]) + 0.5 * math.log2(0.5 / m[1])
    assert cmp["js_turns_per_dialogue"] == pytest.approx((math.log2(1 / m[0]) + kl_p) / 2)
    assert cmp["noncommittal_simulated"] == 0.0 and cmp["noncommittal_human"] == pytest.approx(1 / 3)


def test_reaction_rules_known_answers():
    from interplay.data.reactions import reaction_of

    assert reaction_of("Sounds great. I accept your recommendation!") == "accept"
    assert reaction_of("I'll have to check it out. Who's in it?") == "accept"  # a commitment, then a question
    assert reaction_of("That sounds really interesting; what's it about?") == "none"  # approval with a question
    assert reaction_of("Nah I will not be watching") == "reject"
    assert reaction_of("Not my genre, do you have another recommendation?") == "reject"
    assert reaction_of("I saw that one years ago.") == "none"


def test_inspired_reactions_against_the_hand_labelled_gold(built_sources):
    """The annotator's accuracy on the 217 hand-labelled INSPIRED reactions (docs/fidelity.md
    reports these figures): the rows read while writing the rules, and the rows labelled after."""
    from pathlib import Path

    from interplay.data.build import read_records
    from interplay.data.reactions import reaction_of

    records = {r.id: r for r in read_records(built_sources / "inspired", "dev")}
    gold = [line.split("\t") for line in (Path(__file__).parent / "fixtures" / "inspired_reactions_gold.tsv")
            .read_text().splitlines() if line and not line.startswith("#")][1:]
    assert len(gold) == 217
    right = {"rules": 0, "held-out": 0}
    for rid, turn, label, part in gold:
        rec = records[rid]
        k = int(turn)
        assert rec.turns[k].role is Role.RECOMMENDER and rec.turns[k + 1].role is Role.USER
        assert any(x["turn"] == k for x in rec.meta["reactions"])  # the loader judged this recommendation
        right[part] += reaction_of(rec.turns[k + 1].text) == label
    assert (right["rules"], right["held-out"]) == (118, 71)  # 0.944 of 125, 0.772 of 92


def test_every_verdict_is_placed_by_id_in_the_whole_dialogue_with_its_slice():
    """A verdict is judged at the recommender turn that first names its item, found by id (the
    verdict spells Heat "heat (1995)", the dialogue "Heat (1996)"), in the whole dialogue (Ronin
    is named after the acceptance); one verdict per item, the first given; items no recommender
    names are counted, not judged; "did not say" is kept and left out of the tasks."""
    from interplay.evaluation.tasks import human_decision_tasks

    rec = _record(0, judged=[("heat (1995)", 1, 0, "form"), ("Toy Story (1995)", 0, 1, "form"),
                             ("Heat (1996)", 0, 0, "reaction"), ("Ronin (1998)", None, 0, "form"),
                             ("Notebook, The (2004)", 1, 0, "form")])
    assert len(rec.turns) == 5 and len(rec.tail) == 2  # the record stops at the acceptance; the tail is kept
    assert [(d.item_id, d.turn, d.accept, d.slice) for d in rec.decisions] == [
        ("ml:1", 1, 0, "other-seen"), ("ml:6", 3, 1, "target"), ("ml:3", 5, None, "other-unseen")]
    assert rec.meta["decisions_unplaced"] == 1  # the Notebook: never recommended
    assert rec.item_id("Heat (1996)") == rec.target.item_id == "ml:6"
    tasks, skipped = human_decision_tasks([rec])
    assert [(t.extra["item_id"], t.extra["human_accept"], t.extra["slice"]) for t in tasks] == [
        ("ml:1", 0, "other-seen"), ("ml:6", 1, "target")]
    assert skipped["the person did not say (other-unseen)"] == 1
    assert tasks[0].observation.history[-1].titles == ["Toy Story (1995)"]
    assert tasks[1].observation.history[-1].titles == ["Heat (1996)"]
    # without a target every verdict is in the no-target slice
    none = build_record_without_target()
    assert {d.slice for d in none.decisions} == {"no-target"}


def build_record_without_target() -> DialogueRecord:
    from interplay.data.raw_dialogue import RawTurn, build_record

    turns = [RawTurn(Role.USER, "Anything.", [], Action.DISCLOSE_GOAL),
             RawTurn(Role.RECOMMENDER, f"Try {mark_title('Ronin (1998)')}.", ["Ronin (1998)"], Action.RECOMMEND),
             RawTurn(Role.USER, "No.", [], Action.FEEDBACK)]
    return build_record(record_id="n", source="test", split="test", turns=turns, catalogue=CATALOGUE,
                        accepted_title=None, rejected_titles=["Ronin (1998)"], watched_titles=[])


def test_rule_threshold_spec_and_the_yes_sayer():
    from interplay.agent_specs import AgentContext, AgentSpec, build_agent, check_agent_spec
    from interplay.backends.base import GenerationParams
    from interplay.episode import HistoryTurn, Observation, UserView

    for bad in ("rule:x", "rule:1.5"):
        with pytest.raises(ValueError, match="rule:THRESHOLD needs a number in"):
            check_agent_spec(bad, Role.USER)
    with pytest.raises(ValueError, match="takes no argument"):
        check_agent_spec("rule:0.5", Role.RECOMMENDER)
    view = UserView(episode_id="e", persona=Persona(summary="x"), target_attributes=["action", "crime", "heist"],
                    target_attribute_text="")
    decisions = {}
    for spec in ("rule", "rule:0", "rule:0.5"):
        agent = build_agent(AgentSpec.parse(spec), AgentContext(Role.USER, AgentSpec.parse(spec).arg, CATALOGUE, 0,
                                                                GenerationParams()))
        agent.reset(view)
        decisions[spec] = []
        for title in ("Ronin (1998)", "Toy Story (1995)", "Not In The Catalogue (2001)"):
            obs = Observation(history=[HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                                                   text=f"Try {mark_title(title)}.")], turn_index=1)
            decisions[spec].append(agent.act(obs).action is Action.ACCEPT)
    # Ronin covers 2 of 3 target attributes: 0.67 >= 0.6 and >= 0.5; the yes-sayer accepts everything
    assert decisions == {"rule": [True, False, False], "rule:0": [True, True, True], "rule:0.5": [True, False, False]}


def test_co_ratings_known_answer_and_the_disjoint_probe(tmp_path):
    """Six fans of Heat (ml:6): all love Ronin (ml:3), four of six rated Toy Story (ml:1) low, two of
    three rated the Notebook (ml:2) >= 4; the disjoint probe picks Ronin as co-liked and Toy Story as
    co-disliked, never an item the contradicting rule would pick, and its gap is counted apart."""
    from interplay.data.co_ratings import CoRatings

    lines = ["userId,movieId,rating,timestamp"]
    for u in range(1, 7):
        lines += [f"{u},6,4.5,0", f"{u},3,4.0,0", f"{u},1,{2.0 if u <= 4 else 4.0},0"]
    lines += ["1,2,4.0,0", "2,2,4.5,0", "3,2,1.0,0", "7,6,2.0,0", "7,1,5.0,0"]  # user 7 is no fan
    (tmp_path / "movielens-small").mkdir()
    (tmp_path / "movielens-small" / "ratings.csv").write_text("\n".join(lines) + "\n")
    co = CoRatings.from_movielens(tmp_path)
    assert co.fans("ml:6") == ["1", "2", "3", "4", "5", "6"]
    assert co.liked_shares("ml:6") == {"ml:3": 1.0, "ml:1": pytest.approx(2 / 6), "ml:2": pytest.approx(2 / 3)}
    assert co.co_liked("ml:6") == ["ml:3"] and co.co_disliked("ml:6") == ["ml:1"]
    rng = random.Random(0)
    assert probe_item("co-liked", HEAT, CATALOGUE, rng, co_ratings=co).item_id == "ml:3"
    # Toy Story shares no attribute with Heat: a training negative could be it, so it is never a probe item
    assert contradicts_heat("ml:1") and probe_item("co-disliked", HEAT, CATALOGUE, rng, co_ratings=co) is None
    with pytest.raises(ValueError, match="needs MovieLens co-ratings"):
        probe_item("co-liked", HEAT, CATALOGUE, rng)
    rows = [{"record_id": "a", "probe": "co-liked", "accept": 1, "attribute_match": 0.5},
            {"record_id": "a", "probe": "co-disliked", "accept": 0, "attribute_match": 0.5},
            {"record_id": "b", "probe": "co-liked", "accept": 1, "attribute_match": 0.5},
            {"record_id": "b", "probe": "co-disliked", "accept": 1, "attribute_match": 0.5}]
    d = discrimination(rows)
    assert d["disjoint_gap"]["n"] == 2 and d["disjoint_gap"]["value"] == 0.5 and d["gap"]["n"] == 0


def contradicts_heat(item_id: str) -> bool:
    from interplay.training.counterfactual import contradicts

    return contradicts(CATALOGUE[item_id], HEAT)


def test_hint_use_marks_the_figures_an_agent_was_given():
    from interplay.evaluation.probes import ATTRIBUTE_RULE_FIGURES, hint_use

    assert hint_use(None) == {"uses": [], "by_construction": []}
    trained = {"grounding_match": True, "counterfactual_negatives": 0.5}
    h = hint_use(trained, "usersim:runs/ckpt/x")
    assert h["uses"] == ["training negatives chosen by the contradicting rule", "match counts in its prompt"]
    assert h["by_construction"] == list(ATTRIBUTE_RULE_FIGURES) and "disjoint_gap" not in h["by_construction"]
    assert hint_use({"grounding_match": True}, "usersim-nomatch:runs/ckpt/x")["uses"] == ["match counts in its training"]


def test_fidelity_parts_grow_on_resume_and_a_folder_keeps_what_it_ran(tmp_path):
    """Human decisions first on a slow machine, the other parts later into the same folders: a
    folder that ran more parts keeps them; parts may be added on resume, never dropped."""
    from interplay.evaluation.config import EvalConfig
    from interplay.evaluation.fidelity import PARTS, FidelityConfig, agent_eval_config
    from interplay.run_folder import RunDirError, prepare_run_folder

    cfg = FidelityConfig(users=["rule", "rule:0"], data="d", out=str(tmp_path), parts=["human"])
    first = agent_eval_config(cfg, 0)
    assert first.parts == ["human"]
    prepare_run_folder(first.out, first, resume=False)
    full = agent_eval_config(cfg.model_copy(update={"parts": list(PARTS)}), 0)
    prepare_run_folder(full.out, full, resume=True)  # parts added: resumes
    assert agent_eval_config(cfg, 0).parts == PARTS  # the folder keeps every part it ran
    assert agent_eval_config(cfg, 1).parts == ["human"]  # another agent's folder is its own
    fewer = EvalConfig(**{**full.model_dump(), "parts": ["human"]})
    with pytest.raises(RunDirError, match="parts"):
        prepare_run_folder(full.out, fewer, resume=True)
    with pytest.raises(ValueError, match="choose from"):
        FidelityConfig(users=["rule"], data="d", out="o", parts=["bogus"])


def test_fidelity_with_repetition_controls_decodes_like_a_simulation_in_its_own_folder(tmp_path):
    """``--repetition-controls``: the agent is decoded greedily with the simulation's controls, in
    a folder of its own (the plain evaluation of the same spec is kept), whose saved config says
    so (the scorecard names it with '+controls')."""
    from interplay.evaluation.fidelity import FidelityConfig, agent_eval_config, decoded_with_controls
    from interplay.runtime.role_decoding import SimulationGeneration

    plain = agent_eval_config(FidelityConfig(users=["rule"], data="d", out=str(tmp_path), parts=["human"]), 0)
    ctl = agent_eval_config(FidelityConfig(users=["rule"], data="d", out=str(tmp_path), parts=["human"],
                                           repetition_controls=True), 0)
    assert Path(plain.out).name == "rule" and Path(ctl.out).name == "rule+controls"
    sim = SimulationGeneration()
    g = ctl.generation
    assert (g.temperature, g.repetition_penalty, g.no_repeat_ngram, g.partner_no_repeat_ngram,
            g.own_no_repeat_ngram) == (0.0, sim.repetition_penalty, sim.no_repeat_ngram,
                                       sim.partner_no_repeat_ngram, sim.own_no_repeat_ngram)
    assert not plain.generation.repetition_controls_on and g.repetition_controls_on
    for cfg in (plain, ctl):  # the card names the agent by how its folder decoded
        Path(cfg.out).mkdir()
        (Path(cfg.out) / "config.json").write_text(cfg.model_dump_json())
    assert not decoded_with_controls(Path(plain.out)) and decoded_with_controls(Path(ctl.out))
    from interplay.evaluation.fidelity_results import agent_checkpoint
    from interplay.simulators import shipped_dir

    shipped = f"usersim:{shipped_dir(Role.USER)}"
    assert agent_checkpoint(shipped + "+controls") == agent_checkpoint(shipped) != "-"


def test_scorecard_result_files_carry_figures_checkpoint_threshold_and_notes(tmp_path):
    """A scorecard becomes three docs result files whose rendered tables hold its figures, each
    row with the agent's checkpoint hash ('-' without weights) and threshold."""
    import datetime as dt
    import json

    from interplay.evaluation.fidelity_results import write_scorecard_results
    from interplay.results_docs import load_result, render_table

    dec = {"n": 3, "human_accepts": 2, "human_rejects": 1, "agent_accepts": 2, "dialogues": 2,
           **{k: {"value": 0.75, "ci95": [0.5, 1.0], "majority": 0.5} for k in
              ("accuracy", "balanced_accuracy", "kappa", "reject_f1")}}
    card = {"config": {"data": "data/x", "split": "test"},
            "agents": [{"agent": "rule", "accept_threshold": 0.5, "decisions": {"all": dec, "target": {"n": 0}},
                        "discrimination": {"rates": {"matching": {"n": 4, "accept_rate": 1.0, "ci95": [1.0, 1.0]}},
                                           "gap": {"n": 4, "value": 1.0, "ci95": [1.0, 1.0]}, "match_auc": 1.0,
                                           "disjoint_gap": {"n": 2, "value": 0.5, "ci95": [0.0, 1.0]}},
                        "hint_use": {"uses": [], "by_construction": []},
                        "replay": {"episodes": 5, "SR": 0.6, "ET": 0.2, "FR": 0.2}}]}
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "scorecard.json").write_text(json.dumps(card))
    paths = write_scorecard_results(tmp_path / "sc", "fid", "interplay evaluate fidelity ...", tmp_path / "res",
                                    dt.date(2026, 12, 6), notes=["zero parts pending"])
    assert [p.name for p in paths] == ["fid-decisions.json", "fid-probes.json", "fid-replay.json"]
    decisions = render_table(load_result(paths[0]), "fid-decisions")
    assert "| rule | all | 3 (2/1) | 2 | 2 | 0.75 [0.50, 1.00] | 0.75 [0.50, 1.00] |" in decisions
    assert decisions.count("| rule |") == 1 and "| - | 0.500 |" in decisions  # no row for an empty slice
    assert "- zero parts pending" in decisions
    probes = render_table(load_result(paths[1]), "fid-probes")
    assert "| 1.00 [1.00, 1.00] (4) |" in probes and "| 0.50 [0.00, 1.00] (2) |" in probes
    assert "| rule | 5 | 0.600 | 0.200 | 0.200 | - | 0.500 |" in render_table(load_result(paths[2]), "fid-replay")


def test_scorecard_results_for_a_few_agents_with_their_faults(tmp_path):
    """``agents`` keeps those rows in that order (an unknown agent is refused by name); cards with
    simulator faults give a faults table with the user's behaviour beside people's."""
    import datetime as dt
    import json

    from interplay.evaluation.fidelity_results import write_scorecard_results
    from interplay.results_docs import ResultsError, load_result

    def agent(name: str, fault: float) -> dict:
        return {"agent": name, "accept_threshold": None, "decisions": {"all": {"n": 0}}, "discrimination": None,
                "hint_use": None, "replay": {"episodes": 4, "SR": 0.5, "ET": 0.0, "FR": 0.5},
                "simulator_faults": {"episodes": 4, "any_fault": fault, "failed_runs_simulator_share": 0.0,
                                     "kinds": {"repeats_itself": {"episodes": int(fault * 4), "examples": []}}},
                "behaviour": {"figures": {"simulated": {"user": {"self_repeat_rate": fault, "copied_share": 0.1,
                                                                 "repeated_ngram_share": 0.0}},
                                          "human": {"user": {"self_repeat_rate": 0.0, "copied_share": 0.05,
                                                             "repeated_ngram_share": 0.01}}}}}

    card = {"config": {"data": "data/x", "split": "test"}, "agents": [agent("rule", 0.25), agent("rule:0", 0.5)]}
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "scorecard.json").write_text(json.dumps(card))
    paths = write_scorecard_results(tmp_path / "sc", "two", "c", tmp_path / "res", dt.date(2026, 12, 6),
                                    agents=["rule:0", "rule"])
    assert [p.name for p in paths] == ["two-decisions.json", "two-probes.json", "two-replay.json", "two-faults.json"]
    faults = load_result(paths[3])
    assert [r["agent"] for r in faults.rows] == ["rule:0", "rule"]
    assert faults.rows[0]["faults"] == 0.5 and faults.rows[0]["kinds"] == "repeats_itself 2"
    assert faults.rows[1]["self_repeats"] == "0.250 / 0.000" and faults.rows[1]["copied"] == "0.100 / 0.050"
    with pytest.raises(ResultsError, match="no agent usersim:x"):
        write_scorecard_results(tmp_path / "sc", "two", "c", tmp_path / "res", agents=["usersim:x"])
