"""Decisions read without generating: P(action) from the action tokens' likelihood."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interplay.backends.continuation_scoring import score_continuations
from interplay.episode import HistoryTurn, Observation, Persona, UserView
from interplay.protocol import Action, Role, mark_title


def naive_scores(model, tok, prompt: str, continuations: list[str]) -> list[float]:
    """One full forward pass per continuation (what the shared-prefix scorer must equal)."""
    a = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for c in continuations:
        b = tok(c, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([a + b])).logits[0].float(), -1)
        out.append(sum(float(logp[len(a) + j - 1, b[j]]) for j in range(len(b))))
    return out


@pytest.fixture(scope="module")
def user_ckpt(tiny_model_dir, tmp_path_factory):
    """The tiny random model with the protocol tokens added, saved as a checkpoint."""
    from interplay.training.tokenize import add_special_tokens

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    add_special_tokens(tok, model)
    with torch.no_grad():  # spread the new tokens' embeddings so the actions differ between prompts
        for row in tok.convert_tokens_to_ids([f"<{a.value}>" for a in Action]):
            model.get_input_embeddings().weight[row] += torch.randn_like(model.get_input_embeddings().weight[row])
    out = tmp_path_factory.mktemp("user-ckpt")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("with_added_tokens", [False, True])
def test_shared_prefix_scores_equal_one_pass_per_continuation(tiny_model_dir, user_ckpt, with_added_tokens):
    path = user_ckpt if with_added_tokens else tiny_model_dir
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    prompt = "Role: user\nWants: a heist film<|end|><|user|>" if with_added_tokens else "I want a heist film. <action>"
    conts = ["<accept>", "<action><feedback></action>", "x", "<inquire> and a longer tail of words"]
    assert score_continuations(model, tok, prompt, conts) == pytest.approx(naive_scores(model, tok, prompt, conts),
                                                                           abs=1e-4)


def test_scoring_prefix_cache_reuses_shared_prefixes_and_changes_no_score(tiny_model_dir):
    """Prompts of one dialogue grow turn by turn and probes differ only at the end: with the cache,
    each is run from the end of the longest prefix it shares with a kept prompt, and every score
    equals the one pass per continuation; entries stay within the byte budget."""
    from interplay.backends.continuation_scoring import ScoringPrefixCache

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    head = "You are a movie fan. You want a heist film with a clever plan, set in a big city. " * 2
    turns = ["Hi, any ideas?", "Do you like action?", "Yes, and some suspense.", "Try Heat (1995)."]
    prompts = [head + " ".join(turns[:k + 1]) for k in range(len(turns))]  # each the previous one plus a turn
    prompts += [head + "Try Ronin (1998). <action>", head + "Try Up (2009). <action>"]  # probes of one record
    conts = ["<accept>", "<feedback> not quite"]
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    cache = ScoringPrefixCache(budget_bytes=2**30)
    for p in prompts:
        assert score_continuations(model, tok, p, conts, cache) == pytest.approx(naive_scores(model, tok, p, conts),
                                                                                 abs=1e-4)
    st = cache.stats
    assert st["lookups"] == len(prompts) and st["hits"] == len(prompts) - 1  # all but the first reuse
    assert st["prefilled_tokens"] + st["reused_tokens"] == sum(lengths)
    assert st["prefilled_tokens"] < sum(lengths) / 2
    # a grown prompt replaces the entry it extends: the dialogue's turns leave one entry, not four
    assert len(cache.store.entries) == 3
    one = cache.store.entries[next(iter(cache.store.entries))].nbytes
    small = ScoringPrefixCache(budget_bytes=int(one * 1.5))
    for p in prompts:
        score_continuations(model, tok, p, conts, small)
    assert small.store.used_bytes <= small.store.budget_bytes and small.stats["evictions"] > 0


def observations() -> list[Observation]:
    """User observations right after a recommendation, and before any."""
    obs = []
    for i, title in enumerate(["Heat (1995)", "Toy Story (1995)", "Casablanca (1942)", "Alien (1979)"]):
        hist = [HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text=f"Something like number {i}."),
                HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=f"Try {mark_title(title)}.")]
        obs.append(Observation(history=hist, turn_index=2))
        obs.append(Observation(history=hist[:1] + [HistoryTurn(role=Role.RECOMMENDER, action=Action.INQUIRE,
                                                                text=f"Why number {i}?")], turn_index=2))
    return obs


def test_scored_decision_is_the_greedy_constrained_action(user_ckpt):
    """With the protocol tokens added, the most probable legal action is the action greedy
    constrained decoding writes, turn for turn; probabilities cover exactly the legal actions."""
    from agents.llm import FineTunedUserSimulator
    from interplay.backends.base import GenerationParams
    from interplay.backends.transformers_backend import TransformersBackend
    from interplay.simulation_data import load_demo

    backend = TransformersBackend(str(user_ckpt), dtype="float32")
    catalogue = load_demo().catalogue
    agent = FineTunedUserSimulator(backend, backend.tokenizer, GenerationParams(max_new_tokens=24),
                                   catalogue=catalogue, grounded=False)
    agent.reset(UserView(episode_id="e", persona=Persona(summary="Likes crime."), target_attributes=["crime"],
                         target_attribute_text="A crime film."))
    actions = set()
    for base in observations():
        allowed = set(base.legal_actions(Role.USER))
        while len(allowed) >= 2:  # then without each winner in turn: every action gets compared
            obs = base.model_copy(update={"allowed_actions": frozenset(allowed)})
            probs = agent.action_probabilities(obs)
            assert set(probs) == {a.value for a in allowed} and sum(probs.values()) == pytest.approx(1.0)
            turn = agent.act(obs)
            assert turn.meta["decoding"] == "constrained"
            assert turn.action.value == max(probs, key=probs.get), (probs, turn.raw)
            actions.add(turn.action)
            allowed.discard(turn.action)
    assert len(actions) >= 3  # the check is not one constant answer
    narrowed = Observation(history=observations()[0].history, turn_index=2,
                           allowed_actions=frozenset({Action.ACCEPT, Action.FEEDBACK}))
    assert set(agent.action_probabilities(narrowed)) == {"accept", "feedback"}


def test_likelihood_of_a_real_user_turn_equals_a_direct_forward_pass(user_ckpt):
    """The fidelity scorecard's NLL: the agent's log-likelihood of a recorded turn, in its wire
    format after its prompt, equals one forward pass over prompt + turn; tokens counted alike."""
    from agents.llm import FineTunedUserSimulator
    from interplay.backends.base import GenerationParams
    from interplay.backends.transformers_backend import TransformersBackend
    from interplay.protocol import Turn, format_turn

    backend = TransformersBackend(str(user_ckpt), dtype="float32")
    agent = FineTunedUserSimulator(backend, backend.tokenizer, GenerationParams(), grounded=False)
    agent.reset(UserView(episode_id="e", persona=Persona(summary="Likes crime."), target_attributes=["crime"],
                         target_attribute_text="A crime film."))
    model = AutoModelForCausalLM.from_pretrained(user_ckpt).eval()
    obs = observations()[0]
    for turn in (Turn(Action.ACCEPT, "Yes, I love that one!"), Turn(Action.FEEDBACK, "Seen it. Something newer?")):
        logprob, tokens = agent.turn_likelihood(obs, turn)
        text = format_turn(turn)[len(agent.prefill):]
        assert logprob == pytest.approx(naive_scores(model, backend.tokenizer, agent.prompt(obs), [text])[0], abs=1e-4)
        assert tokens == len(backend.tokenizer(text, add_special_tokens=False)["input_ids"]) and tokens > 5


def test_evaluate_user_scores_decisions_through_ray(user_ckpt, tmp_path, ray_session):
    """``--decision score`` end to end (real Ray, model server, agent host): each human-judged
    item gets P(accept) from the server, the decision follows the threshold, the metrics add the
    ROC AUC; an agent that cannot score falls back to generating."""
    from test_evaluation import ITEMS, records

    from interplay.evaluation.config import EvalConfig
    from interplay.evaluation.evaluate import evaluate_user
    from interplay.evaluation.runner import ResultLog

    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records()))
    (data / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    out = tmp_path / "scored"
    m = evaluate_user(EvalConfig(kind="user", agent=f"usersim:{user_ckpt}", data=str(data), out=str(out),
                                 parts=["human", "nll"], decision="score", accept_threshold=0.3, concurrency=4),
                      progress=False)
    nll = list(ResultLog(out / "user_turn_nll.jsonl").rows.values())
    assert len(nll) == 8 and all(r["logprob"] < 0 and r["tokens"] > 3 for r in nll)  # every recorded user turn
    assert m["user_turn_nll"]["nll_per_token"] == pytest.approx(-sum(r["logprob"] for r in nll) / sum(r["tokens"] for r in nll))
    assert m["user_turn_nll"]["nll_per_turn"] == pytest.approx(-sum(r["logprob"] for r in nll) / len(nll))
    rows = list(ResultLog(out / "human_view.jsonl").rows.values())
    assert len(rows) == 3 and all(r["decision_method"] == "score" for r in rows)
    for r in rows:
        assert set(r["action_probabilities"]) == {"accept", "disclose-goal", "feedback", "greeting", "inquire"}
        assert (r["action"] == "accept") == (r["p_accept"] >= 0.3)
    assert {r["item_id"]: int(r["human_accept"]) for r in rows} == {"ml:2378": 1, "ml:5283": 1, "ml:4718": 0}
    accepted = [r["p_accept"] for r in rows if r["human_accept"]]
    rejected = [r["p_accept"] for r in rows if not r["human_accept"]]
    # the ROC AUC by hand: the share of (accepted, rejected) pairs P(accept) orders right, ties half
    auc = sum(float(a > b) + 0.5 * (a == b) for a in accepted for b in rejected) / (len(accepted) * len(rejected))
    h = m["human_view"]
    assert h["decision_method"] == {"score": 3} and h["roc_auc"] == pytest.approx(auc), (accepted, rejected)
    assert h["agent_accepts"] == sum(r["p_accept"] >= 0.3 for r in rows)
    # a known answer: the rule user's P(accept) is the share of the target's attributes the item has
    rule = evaluate_user(EvalConfig(kind="user", agent="rule", data=str(data), out=str(tmp_path / "rule-scored"),
                                    parts=["human"], decision="score", accept_threshold=0.75, concurrency=4),
                         progress=False)
    wanted = {r.id: r.target.attributes for r in records() if r.target is not None}
    attrs = {i.item_id: set(i.attributes) for i in ITEMS}
    rows = list(ResultLog(tmp_path / "rule-scored" / "human_view.jsonl").rows.values())
    assert {r["item_id"]: r["p_accept"] for r in rows} == {
        r["item_id"]: len(attrs[r["item_id"]] & set(wanted[r["record_id"]])) / len(wanted[r["record_id"]]) for r in rows}
    accepted = [r["p_accept"] for r in rows if r["human_accept"]]
    rejected = [r["p_accept"] for r in rows if not r["human_accept"]]
    auc = sum(float(a > b) + 0.5 * (a == b) for a in accepted for b in rejected) / (len(accepted) * len(rejected))
    assert (accepted, rejected, auc) == ([1.0, 1.0], [0.5], 1.0)  # the judged items' attributes, worked out
    h = rule["human_view"]
    assert h["roc_auc"] == auc and h["agent_accepts"] == 2 and h["decision_method"] == {"score": 3}
    fallback = evaluate_user(EvalConfig(kind="user", agent="py:eval_agents:AcceptFirstUser", data=str(data),
                                        out=str(tmp_path / "rule"), parts=["human"], decision="score", concurrency=4),
                             progress=False)
    assert fallback["human_view"]["decision_method"] == {"generate": 3} and fallback["human_view"]["agent_accepts"] == 3
    assert fallback["user_turn_nll"] is None  # not asked for


def test_calibrated_user_decides_by_its_threshold_and_writes_the_reply_under_it(user_ckpt):
    """With ``accept_threshold`` a UserSim answering a recommendation accepts exactly when
    P(accept) reaches the threshold (else the likeliest other action), records P(accept), and
    writes a legal reply of that action; turns that answer no recommendation are untouched."""
    from agents.llm import FineTunedUserSimulator
    from interplay.backends.base import GenerationParams
    from interplay.backends.transformers_backend import TransformersBackend
    from interplay.simulation_data import load_demo

    backend = TransformersBackend(str(user_ckpt), dtype="float32")
    catalogue = load_demo().catalogue
    view = UserView(episode_id="e", persona=Persona(summary="Likes crime."), target_attributes=["crime"],
                    target_attribute_text="A crime film.")

    def agent(threshold):
        a = FineTunedUserSimulator(backend, backend.tokenizer, GenerationParams(max_new_tokens=24), catalogue=catalogue,
                                   grounded=False, accept_threshold=threshold)
        a.reset(view)
        return a

    plain = agent(None)
    after_rec = observations()[0::2]
    p = [plain.action_probabilities(o)["accept"] for o in after_rec]
    ranked = sorted(set(p))
    half = len(ranked) // 2
    # halfway between two items' P(accept), never on one: the agent's own recomputation may differ
    # from this one in the last bits, and must not change which side of the threshold an item is on
    cut = (ranked[half - 1] + ranked[half]) / 2
    assert ranked[half] - ranked[half - 1] > 1e-3 * ranked[half], ranked  # far apart, beyond any rounding
    calibrated = agent(cut)
    for obs, p_accept in zip(after_rec, p):
        turn = calibrated.act(obs)
        assert turn.meta["p_accept"] == pytest.approx(p_accept, abs=1e-6)
        probs = plain.action_probabilities(obs)
        others = {a: q for a, q in probs.items() if a != "accept"}
        want = "accept" if p_accept >= cut else max(others, key=others.get)
        assert turn.action.value == want and turn.meta["decoding"] == "constrained", (probs, turn.raw)
    assert {calibrated.act(o).action for o in after_rec} >= {Action.ACCEPT}
    assert any(calibrated.act(o).action is not Action.ACCEPT for o in after_rec)
    assert all(agent(0.0).act(o).action is Action.ACCEPT for o in after_rec)
    for obs in observations()[1::2]:  # no recommendation to answer: the model's own turn, no P(accept)
        got, want = calibrated.act(obs), plain.act(obs)
        assert "p_accept" not in got.meta and (got.action, got.text) == (want.action, want.text)
    with pytest.raises(ValueError, match="constrained decoding"):
        FineTunedUserSimulator(backend, backend.tokenizer, GenerationParams(decoding="free"), grounded=False,
                               accept_threshold=0.5)


def test_calibrate_stores_the_valid_threshold_that_later_runs_use(user_ckpt, tmp_path, ray_session):
    """``evaluate calibrate`` on a valid-split run writes its best threshold into the checkpoint;
    a test-split run is refused by name; later scored runs default to it, and replayed
    episodes decide by it (real Ray)."""
    import json
    import shutil

    from test_evaluation import ITEMS, records

    from interplay.decision_calibration import CALIBRATION_FILE, calibrate_from_run, calibrated_threshold
    from interplay.episode_log import latest_episodes
    from interplay.evaluation.config import EvalConfig
    from interplay.evaluation.evaluate import evaluate_user

    ckpt = tmp_path / "ckpt"
    shutil.copytree(user_ckpt, ckpt)
    data = tmp_path / "data"
    data.mkdir()
    for split in ("valid", "test"):
        (data / f"{split}.jsonl").write_text("".join(r.model_copy(update={"split": split}).model_dump_json() + "\n"
                                                      for r in records()))
    (data / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    agent = f"usersim:{ckpt}"
    valid = evaluate_user(EvalConfig(kind="user", agent=agent, data=str(data), split="valid", out=str(tmp_path / "v"),
                                     parts=["human"], decision="score", concurrency=4), progress=False)
    assert valid["settings"]["accept_threshold"] == 0.5  # nothing calibrated yet
    with pytest.raises(ValueError, match="field 'split' is 'test'"):
        test_run = tmp_path / "t"
        evaluate_user(EvalConfig(kind="user", agent=agent, data=str(data), split="test", out=str(test_run),
                                 parts=["human"], decision="score", concurrency=4), progress=False)
        calibrate_from_run(test_run)
    with pytest.raises(ValueError, match="config.json: missing"):
        calibrate_from_run(tmp_path / "nowhere")
    record = calibrate_from_run(tmp_path / "v")
    assert record["accept_threshold"] == pytest.approx(valid["human_view"]["best_threshold"])
    assert json.loads((ckpt / CALIBRATION_FILE).read_text())["chosen_on"]["split"] == "valid"
    t = calibrated_threshold(ckpt)
    later = evaluate_user(EvalConfig(kind="user", agent=agent, data=str(data), split="test", out=str(tmp_path / "t2"),
                                     parts=["human", "replay"], decision="score", concurrency=4), progress=False)
    assert later["settings"]["accept_threshold"] == pytest.approx(t)
    assert later["human_view"]["balanced_accuracy"] == pytest.approx(valid["human_view"]["best_threshold_balanced_accuracy"])
    decided = [turn for ep in latest_episodes(tmp_path / "t2" / "replay" / "episodes.jsonl") for turn in ep.turns
               if "p_accept" in turn.meta]
    assert decided, "replayed user turns answering a recommendation carry P(accept)"
    for turn in decided:
        assert (turn.action is Action.ACCEPT) == (turn.meta["p_accept"] >= t)


def test_calibrate_command_refuses_a_missing_run_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import subprocess_env

    got = subprocess.run([sys.executable, "-m", "interplay.cli", "evaluate", "calibrate", str(tmp_path / "nowhere")],
                         env=subprocess_env(), capture_output=True, text=True)
    text = (got.stdout + got.stderr).strip()
    assert got.returncode == 2 and "Traceback" not in text
    assert "nowhere/config.json: missing" in text.replace("\n", "")
