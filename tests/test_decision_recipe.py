"""The decision-aware training recipe: counterfactual negatives and the action-token loss weight."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interplay.catalogue import Catalogue, Item
from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode import Persona, Target, find_target_leak
from interplay.protocol import Action, Role, Turn, mark_title
from interplay.training.collator import RoleMaskCollator
from interplay.training.counterfactual import contradicts, counterfactual_negatives, people_rejections
from interplay.training.tokenize import ROLE_ID, add_special_tokens, tokenize_record
from interplay.training.train import weighted_lm_loss

ITEMS = [Item(item_id="ml:6", title="Heat (1995)", attributes=("action", "crime", "heist")),
         Item(item_id="ml:1", title="Toy Story (1995)", attributes=("animation", "children", "comedy")),
         Item(item_id="ml:2", title="Notebook, The (2004)", attributes=("romance", "drama")),
         Item(item_id="ml:3", title="Ronin (1998)", attributes=("action", "thriller")),
         Item(item_id="ml:4", title="Solo (2018)", attributes=("sci-fi",))]
CATALOGUE = Catalogue(ITEMS)
TARGET = Target(item_id="ml:6", title="Heat (1995)", attributes=["action", "crime", "heist"],
                attribute_text="A crime film about a heist.")


def record(i: int, with_recommendation: bool = True) -> DialogueRecord:
    turns = [RecordTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text="A tense crime film, please.")]
    if with_recommendation:
        turns += [RecordTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                             text=f"Have you seen {mark_title('Ronin (1998)')} or {mark_title('Heat (1995)')}?",
                             titles=["Ronin (1998)", "Heat (1995)"]),
                  RecordTurn(role=Role.USER, action=Action.ACCEPT, text="Heat, yes!")]
    return DialogueRecord(id=f"r{i}", source="test", split="train", persona=Persona(summary="Likes crime."),
                          target=TARGET, turns=turns,
                          outcome=Outcome(accepted_item="Heat (1995)") if with_recommendation else Outcome())


def judged(i: int, answer: RecordTurn, accept: int) -> DialogueRecord:
    """A record whose seeker judged Ronin (recommended at turn 1) and answered with ``answer``."""
    from interplay.data.schema import HumanDecision

    r = record(i)
    return r.model_copy(update={"turns": [*r.turns[:2], answer], "decisions": [HumanDecision(
        item_id="ml:3", title="Ronin (1998)", turn=1, accept=accept, slice="other-unseen", origin="form")]})


def test_rejections_in_peoples_words():
    fb = lambda text: RecordTurn(role=Role.USER, action=Action.FEEDBACK, text=text)  # noqa: E731
    records = [judged(0, fb("No,  I didn't like that one at all."), 0),
               judged(1, fb("Seen it, not for me."), 1),  # accepted: not a rejection
               judged(2, fb(f"I prefer {mark_title('Solo (2018)')} instead."), 0),  # names a title
               judged(3, fb("Nope."), 0),  # too short
               judged(4, RecordTurn(role=Role.USER, action=Action.INQUIRE, text="Is it a comedy though?"), 0),
               judged(5, fb("No, I didn't like that one at all."), 0),  # the same words again
               judged(6, fb("I only watch Heat, sorry."), 0)]
    pool = people_rejections(records)
    assert pool == ["No, I didn't like that one at all.", "I only watch Heat, sorry."]
    negatives = counterfactual_negatives([record(i) for i in range(6)], CATALOGUE, rate=1.0, seed=3, rejections=pool)
    # "I only watch Heat" names the target: never the rejection of a record whose target it leaks
    assert negatives and {n.turns[-1].text for n in negatives} == {"No, I didn't like that one at all."}
    assert all(n.turns[-1].action is Action.FEEDBACK for n in negatives)
    # the same records swapped for the same items as with the templates (one draw per record either way)
    templated = counterfactual_negatives([record(i) for i in range(6)], CATALOGUE, rate=1.0, seed=3)
    assert {n.id: n.turns[-2].titles for n in negatives}.items() <= {n.id: n.turns[-2].titles for n in templated}.items()


def test_counterfactual_negatives_known_answer():
    records = [record(i) for i in range(6)] + [record(9, with_recommendation=False)]
    negatives = counterfactual_negatives(records, CATALOGUE, rate=1.0, seed=3)
    assert [n.id for n in negatives] == [f"r{i}#neg-1" for i in range(6)]  # r9 has no recommendation to swap
    for n in negatives:
        rec, rej = n.turns[-2:]
        swapped = CATALOGUE.find(rec.titles[0])
        # only items sharing no attribute with the target (and with two to read): Toy Story, The Notebook
        assert swapped.title in {"Toy Story (1995)", "Notebook, The (2004)"} and contradicts(swapped, TARGET)
        assert Turn(rec.action, rec.text).titles == [swapped.title]  # one item named; the second title unmarked
        assert rec.text.startswith("Have you seen ") and (rej.role, rej.action) == (Role.USER, Action.FEEDBACK)
        assert find_target_leak(rej.text, TARGET) is None and "action, crime, heist" in rej.text
        assert n.outcome.accepted_item is None and n.outcome.rejected_items == [swapped.title]
        assert all(t.action is not Action.ACCEPT for t in n.turns)
    assert len({n.turns[-2].titles[0] for n in negatives}) == 2  # both contradicting items drawn
    assert counterfactual_negatives(records, CATALOGUE, rate=1.0, seed=3) == negatives  # seeded
    assert counterfactual_negatives(records, CATALOGUE, rate=0.0) == []
    with pytest.raises(ValueError, match="not in"):
        counterfactual_negatives(records, CATALOGUE, rate=1.5)


@pytest.fixture(scope="module")
def tok_model(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    add_special_tokens(tok, model)
    return tok, model.eval()


def test_action_tags_weigh_more_and_unit_weights_give_the_models_own_loss(tok_model):
    tok, model = tok_model
    action_ids = frozenset(tok.convert_tokens_to_ids([f"<{a.value}>" for a in Action]))
    feats = tokenize_record(record(0), tok, Role.USER)
    plain = RoleMaskCollator(Role.USER, tok.pad_token_id)(feats)
    assert "loss_weights" not in plain  # weight 1: the default loss path
    batch = RoleMaskCollator(Role.USER, tok.pad_token_id, action_ids=action_ids, action_weight=5.0)(feats)
    labelled = batch["labels"] != -100
    heavy = batch["loss_weights"] == 5.0
    # exactly the user's two action tags (disclose-goal, accept) weigh 5; other labelled tokens 1
    assert heavy.sum() == 2 and set(batch["labels"][heavy].tolist()) == set(
        tok.convert_tokens_to_ids(["<disclose-goal>", "<accept>"]))
    assert (batch["loss_weights"][labelled & ~heavy] == 1).all() and (batch["loss_weights"][~labelled] == 0).all()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"])
        ones = weighted_lm_loss(out.logits, batch["labels"], labelled.float())
        weighted = weighted_lm_loss(out.logits, batch["labels"], batch["loss_weights"])
        ce = torch.nn.functional.cross_entropy(out.logits[0, :-1].float(), batch["labels"][0, 1:], reduction="none",
                                               ignore_index=-100)
    assert ones.item() == pytest.approx(out.loss.item(), rel=1e-5)
    w = batch["loss_weights"][0, 1:]
    assert weighted.item() == pytest.approx(((ce * w).sum() / labelled[0, 1:].sum()).item(), rel=1e-5)


def test_training_with_the_decision_recipe_records_it(tiny_model_dir, tmp_path):
    from interplay.training.train import TrainConfig, train

    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(record(i).model_dump_json() + "\n" for i in range(4)))
    (data / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    out = tmp_path / "ckpt"
    # one step on one batch of all 8 examples at learning rate 0 (and no checkpoint before step 100):
    # its loss is the saved model's loss on all of them
    metrics = train(TrainConfig(dtype="fp32", role=Role.USER, data=str(data), out=str(out), model=str(tiny_model_dir), max_steps=1,
                                batch_size=8, grad_accum=1, logging_steps=1, report_to="none", action_loss_weight=3.0,
                                counterfactual_negatives=1.0, learning_rate=0.0, save_steps=100))
    assert metrics["counterfactual_negatives"] == 4 and metrics["train_examples"] == 8
    assert (metrics["dtype"], metrics["dtype_reason"]) == ("fp32", "asked for")  # recorded beside the checkpoint
    saved = json.loads((out / "interplay_training.json").read_text())
    assert saved["config"]["action_loss_weight"] == 3.0 and saved["config"]["grounded"] is True
    losses = [h["loss"] for h in saved["log_history"] if "loss" in h]
    # the loss worked out example by example (unpacked): next-token cross-entropy on the user's
    # tokens, an action tag weighing 3, over the number of the user's tokens
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    records = [record(i) for i in range(4)]
    examples = [ex for r in records + counterfactual_negatives(records, CATALOGUE, 1.0, seed=0)
                for ex in tokenize_record(r, tok, Role.USER, grounding=CATALOGUE)]
    action_ids = set(tok.convert_tokens_to_ids([f"<{a.value}>" for a in Action]))
    weighted = plain = count = 0.0
    for ex in examples:
        ids = torch.tensor(ex["input_ids"])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids[None]).logits[0].float(), -1)
        for t in range(1, len(ids)):
            if ex["token_roles"][t] == ROLE_ID[Role.USER]:
                ce = -logp[t - 1, ids[t]].item()
                weighted += (3.0 if ids[t].item() in action_ids else 1.0) * ce
                plain += ce
                count += 1
    assert len(examples) == 8 and count > 50
    assert abs(weighted - plain) > 0.1 * count  # the action weight matters: an unweighted loss fails below
    assert losses == pytest.approx([weighted / count], rel=1e-4)


def test_decision_examples_known_answer():
    from interplay.training.decision_examples import answered_recommendations, decision_examples

    r = record(0)
    longer = r.model_copy(update={"id": "long", "turns": [
        *r.turns[:2], RecordTurn(role=Role.USER, action=Action.FEEDBACK, text="Seen Ronin. Another?"),
        RecordTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=f"Then {mark_title('Heat (1995)')}.",
                   titles=["Heat (1995)"]),
        RecordTurn(role=Role.USER, action=Action.ACCEPT, text="Yes!"),
        RecordTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=f"Or {mark_title('Ronin (1998)')}.",
                   titles=["Ronin (1998)"])]})  # the last recommendation is never answered
    assert answered_recommendations(longer) == [1, 3]
    out = decision_examples([longer, record(9, with_recommendation=False)])
    assert [d.id for d in out] == ["long#dec-1", "long#dec-3"]
    assert out[0].turns == longer.turns[0:3] and out[1].turns == longer.turns[2:5]
    assert all(d.target == TARGET and d.meta["decision_example_of"] == "long" for d in out)
    assert [d.id for d in decision_examples([longer], copies=2)] == ["long#dec-1.0", "long#dec-1.1",
                                                                     "long#dec-3.0", "long#dec-3.1"]
    no_target = longer.model_copy(update={"target": None})
    assert decision_examples([no_target]) == [] and decision_examples([longer], copies=0) == []
    with pytest.raises(ValueError, match="negative"):
        decision_examples([longer], copies=-1)


def test_training_on_decision_examples_alone(tiny_model_dir, tmp_path):
    from interplay.training.train import TrainConfig, train

    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(record(i).model_dump_json() + "\n" for i in range(3)))
    (data / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    common = dict(role=Role.USER, data=str(data), model=str(tiny_model_dir), max_steps=1, batch_size=2, grad_accum=1,
                  report_to="none", grounding_match=True, dtype="fp32")
    both = train(TrainConfig(out=str(tmp_path / "a"), decision_examples=2, **common))
    assert both["decision_examples"] == 6 and both["train_examples"] == 3 + 6
    alone = train(TrainConfig(out=str(tmp_path / "b"), decision_examples=1, whole_dialogues=False, **common))
    assert alone["decision_examples"] == 3 and alone["train_examples"] == 3
    with pytest.raises(ValueError, match="nothing to train on"):
        train(TrainConfig(out=str(tmp_path / "c"), whole_dialogues=False, **common))
