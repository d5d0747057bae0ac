"""A new scorecard figure added as one declared evaluation part (docs/fidelity.md, "Adding a
figure"): registered in this file alone, it runs under ``evaluate user --parts`` and ``evaluate
fidelity`` on real Ray, lands in ``metrics.json``, the agent's card, ``scorecard.md`` and resumes."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from interplay.episode import HistoryTurn, Observation
from interplay.evaluation.parts import PartContext, TurnPart, check_parts, register_part, unregister_part, user_parts
from interplay.evaluation.tasks import TurnTask, _grounded, _user_view
from interplay.protocol import Action, Role, mark_title
from test_evaluation import ITEMS, records


def _target_offers(ctx: PartContext):
    """The record's target, offered (by its catalogue title) right after the user's first turn."""
    tasks, skipped = [], Counter()
    for r in ctx.records:
        view = _user_view(r, skipped)
        if view is None:
            continue
        title = ctx.catalogue[r.target.item_id].title
        offer = HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=f"How about {mark_title(title)}?")
        history = _grounded([r.turns[0].to_history(), offer], ctx.grounding, r)
        tasks.append(TurnTask(f"target-{r.id}", r.id, Role.USER, view, Observation(history=history, turn_index=2),
                              target=r.target.title, extra={"item_id": r.target.item_id}))
    return tasks, skipped


def _rate(ctx: PartContext, rows: list[dict]) -> dict:
    accepted = sum(r["action"] == "accept" for r in rows)
    return {"n": len(rows), "accepted": accepted, "rate": accepted / len(rows)}


def _section(agents: list[dict]) -> list[str]:
    lines = ["Own target offered at once:", "", "| agent | n | accepted |", "| --- | --- | --- |"]
    return lines + [f"| {a['agent']} | {a['target_offer']['n']} | {a['target_offer']['rate']:.2f} |"
                    for a in agents if a.get("target_offer")]


TARGET_OFFER = TurnPart(
    name="target-offer", description="the user offered its own target after its first turn", label="target offers",
    metrics_key="target_offer", build=_target_offers, summary=_rate, file="target_offer.jsonl", ask="decide",
    scorecard=True, card=lambda folder, metrics, records: {"target_offer": metrics.get("target_offer")},
    section=_section)


@pytest.fixture
def target_part():
    register_part(TARGET_OFFER)
    yield TARGET_OFFER
    unregister_part(TARGET_OFFER.name)


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / "test.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records()))
    (tmp_path / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    return tmp_path


def test_a_registered_part_runs_in_the_evaluation_and_the_scorecard(target_part, data_dir, tmp_path, ray_session):
    from interplay.evaluation.config import EvalConfig
    from interplay.evaluation.evaluate import evaluate_user
    from interplay.evaluation.fidelity import FidelityConfig, evaluate_fidelity

    assert list(user_parts())[-1] == "target-offer"  # after the built-in parts
    # the rule user accepts its own target (it covers every target attribute); "none" has no target
    cfg = EvalConfig(kind="user", agent="rule", data=str(data_dir), out=str(tmp_path / "eval"), parts=["target-offer"],
                     decision="generate", concurrency=2)
    m = evaluate_user(cfg, progress=False)
    assert m["target_offer"] == {"n": 3, "accepted": 3, "rate": 1.0}
    assert m["skipped"] == {"target-offer": {"no target (the user view needs the target's attributes)": 1}}
    assert m["human_view"] == {"n": 0} and m["discrimination"] is None  # parts not run keep their empty value
    rows = [json.loads(x) for x in (tmp_path / "eval" / "target_offer.jsonl").read_text().splitlines()]
    # Super Troopers is spelt a year off in its dialogue: the offer names the catalogue's title
    assert {r["record_id"]: r["item_id"] for r in rows} == {"sr": "ml:2378", "et": "ml:5283", "fr": "ml:2571"}
    # resumed: nothing asked again, the same figures
    (tmp_path / "eval" / "target_offer.jsonl").write_text("".join(json.dumps({**r, "action": "feedback"}) + "\n"
                                                                  for r in rows[:1]) +
                                                          "".join(json.dumps(r) + "\n" for r in rows[1:]))
    again = evaluate_user(cfg, resume=True, progress=False)
    assert again["target_offer"] == {"n": 3, "accepted": 2, "rate": 2 / 3}  # the logged answers, not new ones

    fcfg = FidelityConfig(users=["rule"], data=str(data_dir), out=str(tmp_path / "fid"), decision="generate",
                          parts=["human", "target-offer"], concurrency=2)
    card = evaluate_fidelity(fcfg, progress=False)
    assert card["agents"][0]["target_offer"]["rate"] == 1.0
    md = (tmp_path / "fid" / "scorecard.md").read_text()
    assert "| rule | 3 | 1.00 |" in md and md.index("Decisions against") < md.index("Own target offered")


def test_parts_are_checked_against_the_registry(target_part):
    from interplay.evaluation.config import EvalConfig
    from interplay.evaluation.fidelity import FidelityConfig

    assert check_parts(["human", "target-offer"], scorecard=True) == ["human", "target-offer"]
    with pytest.raises(ValueError, match="choose from human, probe, nll, replay, target-offer"):
        FidelityConfig(users=["rule"], data="d", out="o", parts=["single"])  # not a scorecard part
    with pytest.raises(ValueError, match="nonsense"):
        EvalConfig(kind="user", agent="rule", data="d", out="o", parts=["nonsense"])
    with pytest.raises(ValueError, match="already registered"):
        register_part(TARGET_OFFER)
    unregister_part("target-offer")
    with pytest.raises(ValueError, match="target-offer"):
        EvalConfig(kind="user", agent="rule", data="d", out="o", parts=["target-offer"])
