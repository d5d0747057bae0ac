"""Decoding controls of the batched decode loop (interplay.backends.decoding_controls): repetition
bans hold token for token, greedy with the controls off is today's decoding, seeded sampling does
not depend on the batch; and the simulation's settings (defaults, earlier configs, per role,
turn caps from the data)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interplay.backends.base import GenerationParams, TurnConstraint
from interplay.backends.kv_reuse import generate_reusing_prefix
from interplay.backends.transformers_backend import TransformersBackend
from interplay.protocol import TITLE_OPEN, Action, Role, parse_turn

PROMPTS = ["Hello there, I want a movie", "The user said: I like sci-fi.", "a b c d e f g",
           "Recommend something scary please", "Movies movies movies"]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(str(tiny_model_dir), dtype="float32")


def token_ids(backend, prompts, params, row_params=None, seeds=None, constraints=None):
    with torch.inference_mode():
        return generate_reusing_prefix(backend.model, backend.tokenizer, prompts, params, [None] * len(prompts), None,
                                       seeds, None, constraints, backend.constrainer if constraints else None,
                                       row_params=row_params)


def grams(ids, n):
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


def hf_greedy(backend, prompts, max_new_tokens):
    """transformers' own ``model.generate`` (greedy, left-padded batch): the decoding the loop
    reproduced before the controls existed (tests/test_kv_reuse.py)."""
    tok = backend.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = backend.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
    rows = out[:, enc["input_ids"].shape[1]:].tolist()
    eos = backend.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    cut = []
    for r in rows:  # model.generate pads a finished row after its EOS
        end = next((i + 1 for i, t in enumerate(r) if t in eos), len(r))
        cut.append(r[:end])
    return cut


# -- greedy with the controls off is today's decoding ----------------------------------------------

def test_the_tiny_model_loops_under_greedy_decoding(backend):
    """The fixture these properties are read on: greedy output repeats n-grams (so a ban has work)."""
    out = token_ids(backend, PROMPTS, GenerationParams(max_new_tokens=24, stop=()))
    assert all(len(set(grams(ids, 3))) < len(grams(ids, 3)) for ids in out)


def test_controls_off_greedy_equals_model_generate_token_for_token(backend):
    params = GenerationParams(max_new_tokens=24, stop=())
    assert token_ids(backend, PROMPTS, params) == hf_greedy(backend, PROMPTS, 24)
    # per-row params that are all "off" decode the same tokens
    assert token_ids(backend, PROMPTS, params, row_params=[params] * len(PROMPTS)) == hf_greedy(backend, PROMPTS, 24)


def test_the_processor_path_with_inert_controls_equals_the_plain_path(backend):
    """An n-gram ban too long to ever match sends every row through the logits processors: the
    tokens are those of the plain argmax path."""
    plain = GenerationParams(max_new_tokens=24, stop=())
    inert = plain.model_copy(update={"no_repeat_ngram": 10_000, "partner_no_repeat_ngram": 10_000,
                                     "partner_turn": "movie movie movie", "own_no_repeat_ngram": 10_000,
                                     "own_turns": ("movie movie movie",)})
    assert token_ids(backend, PROMPTS, inert) == token_ids(backend, PROMPTS, plain)


def _next_tokens_before_the_controls(logits, params, generators):
    """The token choice of the decode loop before the controls existed (kv_reuse._next_tokens at
    c740a24), kept here as the reference."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), seed=st.integers(0, 2**31 - 1), temperature=st.sampled_from([0.0, 0.5, 1.0, 1.7]),
       masked=st.booleans())
def test_controls_off_choose_what_the_loop_chose_before(rows, seed, temperature, masked):
    """With the repetition controls off (and top_p 1), the per-row choice draws the same tokens as
    the loop's former choice, greedy and sampled, masked by a grammar or not."""
    from interplay.backends.decoding_controls import RowControls, choose_tokens

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, 500, generator=g) * 4
    allowed = torch.rand(rows, 500, generator=g) > 0.7
    allowed[:, 0] = True
    mask = (lambda x: x.masked_fill(~allowed, float("-inf"))) if masked else None
    params = GenerationParams(temperature=temperature)
    before = _next_tokens_before_the_controls(mask(logits) if masked else logits, params,
                                              [torch.Generator().manual_seed(seed + r) for r in range(rows)])
    now = choose_tokens(logits, [RowControls(params)] * rows, [[1, 2, 3]] * rows, mask,
                        [torch.Generator().manual_seed(seed + r) for r in range(rows)])
    assert now.tolist() == before.tolist()


# -- repetition bans -------------------------------------------------------------------------------

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 4), temperature=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 10_000),
       prompts=st.lists(st.sampled_from(PROMPTS), min_size=1, max_size=4))
def test_no_ngram_repeats_within_a_turn(backend, n, temperature, seed, prompts):
    params = GenerationParams(max_new_tokens=20, stop=(), temperature=temperature, no_repeat_ngram=n)
    out = token_ids(backend, prompts, params, seeds=[seed + i for i in range(len(prompts))])
    for ids in out:
        if TITLE_OPEN in backend.tokenizer.decode(ids):
            continue  # the controls are off inside a title
        assert len(set(grams(ids, n))) == len(grams(ids, n)), backend.tokenizer.decode(ids)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 4), temperature=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 10_000),
       partner=st.sampled_from(["movie movie movie movie movie movie", " please please please please",
                                "g g g g g g g g g g cryptocurrencies"]))
def test_no_ngram_of_the_partners_turn_is_copied(backend, n, temperature, seed, partner):
    """The partner turns are what the tiny model writes greedily after these prompts: without the
    ban the output copies them; with it, no n-gram of the partner's tokens appears."""
    params = GenerationParams(max_new_tokens=20, stop=(), temperature=temperature, partner_no_repeat_ngram=n,
                              partner_turn=partner)
    theirs = set(grams(backend.tokenizer(partner, add_special_tokens=False)["input_ids"], n))
    out = token_ids(backend, PROMPTS, params, seeds=[seed] * len(PROMPTS))
    for ids in out:
        assert not theirs & set(grams(ids, n)), backend.tokenizer.decode(ids)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 5), temperature=st.sampled_from([0.0, 1.0]), seed=st.integers(0, 10_000))
def test_no_ngram_of_the_speakers_own_earlier_turns_comes_back(backend, n, temperature, seed):
    """The speaker's earlier turns are what the tiny model writes greedily after these prompts (so
    without the ban it says them again); with the ban no n-gram of any of them appears."""
    plain = GenerationParams(max_new_tokens=20, stop=())
    earlier = tuple(backend.tokenizer.decode(ids) for ids in token_ids(backend, PROMPTS[:2], plain))
    params = GenerationParams(max_new_tokens=20, stop=(), temperature=temperature, own_no_repeat_ngram=n,
                              own_turns=earlier)
    mine = set().union(*(grams(backend.tokenizer(t, add_special_tokens=False)["input_ids"], n) for t in earlier))
    out = token_ids(backend, PROMPTS, params, seeds=[seed] * len(PROMPTS))
    for ids in out:
        assert not mine & set(grams(ids, n)), backend.tokenizer.decode(ids)


def test_without_the_own_ban_a_turn_says_an_earlier_one_again(backend):
    """The counterpart: greedy decoding of the same prompt writes its earlier turn again, token
    for token; the ban makes the turn differ."""
    plain = GenerationParams(max_new_tokens=20, stop=())
    first = token_ids(backend, [PROMPTS[0]], plain)[0]
    again = token_ids(backend, [PROMPTS[0]], plain)[0]
    assert again == first
    text = backend.tokenizer.decode(first)
    banned = token_ids(backend, [PROMPTS[0]], plain.model_copy(update={"own_no_repeat_ngram": 4,
                                                                      "own_turns": (text,)}))[0]
    assert banned != first
    assert not set(grams(banned, 4)) & set(grams(backend.tokenizer(text, add_special_tokens=False)["input_ids"], 4))


def test_without_the_ban_the_partner_turn_is_copied(backend):
    """The counterpart of the property above: the ban is what removes the copies."""
    ids = token_ids(backend, ["Movies movies movies"], GenerationParams(max_new_tokens=20, stop=()))[0]
    partner = backend.tokenizer.decode(ids)
    assert set(grams(ids, 3)) & set(grams(backend.tokenizer(partner, add_special_tokens=False)["input_ids"], 3))


def test_the_repetition_penalty_changes_greedy_choices_and_breaks_the_loop(backend):
    plain = token_ids(backend, ["Movies movies movies"], GenerationParams(max_new_tokens=20, stop=()))[0]
    penalised = token_ids(backend, ["Movies movies movies"],
                          GenerationParams(max_new_tokens=20, stop=(), repetition_penalty=100.0))[0]
    assert len(set(plain)) < len(set(penalised))
    # a penalty this strong never repeats a token while unseen tokens remain likelier
    assert len(set(penalised)) == len(penalised)


def test_constrained_rows_with_the_controls_on_stay_legal(backend):
    titles = ["The Matrix", "Heat", "Alien", "Up"]
    backend.register_catalogue("controls", titles)
    con = TurnConstraint(actions=(Action.RECOMMEND, Action.INQUIRE), role=Role.RECOMMENDER, catalogue="controls",
                         prefill="<action>")
    params = GenerationParams(max_new_tokens=20, temperature=0.9, repetition_penalty=1.3, no_repeat_ngram=2,
                              partner_no_repeat_ngram=2, partner_turn="I like <movie_title>Heat</movie_title>")
    outs = backend.generate(PROMPTS, params, seeds=list(range(len(PROMPTS))), constraints=[con] * len(PROMPTS))
    for out in outs:
        turn = parse_turn("<action>" + out, role=Role.RECOMMENDER)
        assert turn.action in {Action.RECOMMEND, Action.INQUIRE} and all(t in titles for t in turn.titles)


# -- seeded sampling -------------------------------------------------------------------------------

def test_sampling_is_reproducible_per_seed_and_independent_of_the_batch(backend):
    mine = GenerationParams(max_new_tokens=16, stop=(), temperature=0.8, top_p=0.9, repetition_penalty=1.2,
                            no_repeat_ngram=3, partner_no_repeat_ngram=3, partner_turn="movie movie movie", seed=7)
    alone = token_ids(backend, [PROMPTS[0]], mine, row_params=[mine])[0]
    assert token_ids(backend, [PROMPTS[0]], mine, row_params=[mine])[0] == alone
    # the same request in a batch with other prompts, seeds and settings (greedy, another temperature)
    others = [GenerationParams(max_new_tokens=24, stop=()),
              GenerationParams(max_new_tokens=8, stop=(), temperature=1.5, seed=3)]
    batched = token_ids(backend, [PROMPTS[2], PROMPTS[0], PROMPTS[3]], mine, row_params=[others[0], mine, others[1]])
    assert batched[1] == alone
    assert len(batched[2]) <= 8 and len(batched[0]) <= 24  # each row's own cap
    assert batched[0] == token_ids(backend, [PROMPTS[2]], others[0])[0]  # the greedy row is untouched
    other_seed = mine.model_copy(update={"seed": 8})
    assert token_ids(backend, [PROMPTS[0]], other_seed, row_params=[other_seed])[0] != alone


def test_the_model_server_batches_rows_with_different_settings(backend):
    """A backend that decodes each request with its own settings gets one call for both roles'
    requests (only the stop strings must agree)."""
    import asyncio

    from interplay.runtime.model_server import ModelServer

    server = ModelServer(None, backend_factory=lambda: backend, max_batch=8, batch_wait_ms=50)
    a = GenerationParams(max_new_tokens=6, stop=(), temperature=0.7, seed=1, no_repeat_ngram=3)
    b = GenerationParams(max_new_tokens=9, stop=())

    async def both():
        return await asyncio.gather(server.generate([PROMPTS[0]], a), server.generate([PROMPTS[1]], b))

    (ra,), (rb,) = asyncio.run(both())
    assert server._stats["batches"] == 1 and server._stats["requests"] == 2
    assert [ra] == backend.generate([PROMPTS[0]], a, seeds=[1]) and [rb] == backend.generate([PROMPTS[1]], b)
    assert a.batch_key() != b.batch_key() and a.row_batch_key() == b.row_batch_key()


# -- the simulation's settings -------------------------------------------------------------------

def test_simulation_defaults_sample_and_evaluations_stay_greedy():
    from interplay.evaluation.config import EvalConfig
    from interplay.runtime.simulation import SimulationConfig

    sim = SimulationConfig().generation
    assert (sim.temperature, sim.top_p, sim.repetition_penalty, sim.no_repeat_ngram, sim.partner_no_repeat_ngram,
            sim.own_no_repeat_ngram) == (0.7, 0.9, 1.1, 3, 4, 5)
    ev = EvalConfig.model_fields["generation"].get_default(call_default_factory=True)
    assert (ev.temperature, ev.repetition_penalty, ev.no_repeat_ngram, ev.partner_no_repeat_ngram,
            ev.own_no_repeat_ngram) == (0.0, 1.0, 0, 0, 0)


def test_a_config_saved_before_the_controls_runs_without_them():
    from interplay.runtime.simulation import SimulationConfig

    old = {"user": "llm", "recommender": "llm", "generation": {"max_new_tokens": 96, "temperature": 0.0, "top_p": 1.0,
                                                               "stop": ["</response>"], "seed": 0}}
    cfg = SimulationConfig.model_validate_json(json.dumps(old))
    g = cfg.generation
    assert (g.temperature, g.repetition_penalty, g.no_repeat_ngram, g.partner_no_repeat_ngram) == (0.0, 1.0, 0, 0)
    assert cfg.turn_cap_percentile == 0
    # saved with the other controls but before the ban against the speaker's own turns: ran without it
    between = {"generation": {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1,
                              "no_repeat_ngram": 3, "partner_no_repeat_ngram": 4, "stop": ["</response>"], "seed": 0}}
    g = SimulationConfig.model_validate_json(json.dumps(between)).generation
    assert (g.no_repeat_ngram, g.partner_no_repeat_ngram, g.own_no_repeat_ngram) == (3, 4, 0)
    # a config naming only some generation settings gets the simulation defaults for the rest
    partial = SimulationConfig.model_validate({"generation": {"max_new_tokens": 40}})
    assert (partial.generation.max_new_tokens, partial.generation.temperature, partial.turn_cap_percentile) == (40, 0.7, 95)
    # a saved config reads back as itself (resume)
    fresh = SimulationConfig()
    assert SimulationConfig.model_validate_json(fresh.model_dump_json()).identity() == fresh.identity()


def test_each_role_decodes_with_its_own_settings_and_cap():
    from interplay.runtime.simulation import SimulationConfig

    cfg = SimulationConfig(user_decoding={"temperature": 0.0, "no_repeat_ngram": 0},
                           recommender_decoding={"max_new_tokens": 50})
    p = cfg.role_generation({Role.USER: 21, Role.RECOMMENDER: 30})
    assert (p[Role.USER].temperature, p[Role.USER].no_repeat_ngram, p[Role.USER].max_new_tokens) == (0.0, 0, 21)
    assert (p[Role.RECOMMENDER].temperature, p[Role.RECOMMENDER].max_new_tokens) == (0.7, 50)  # its own cap wins
    assert cfg.role_generation({Role.USER: 500})[Role.USER].max_new_tokens == 96  # never above max_new_tokens
    with pytest.raises(ValueError, match="top_p"):
        SimulationConfig(user_decoding={"top_p": 1.5})


def test_turn_caps_are_a_percentile_of_peoples_turn_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    from interplay.data.schema import RecordTurn
    from interplay.protocol import Turn, format_turn
    from interplay.turn_caps import caps_from_records, nearest_rank

    assert nearest_rank([5, 1, 3, 2, 4], 50) == 3 and nearest_rank([5, 1, 3, 2, 4], 95) == 5
    assert nearest_rank([5, 1, 3, 2, 4], 80) == 4 and nearest_rank([7], 1) == 7
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    user = ["Hi!", "I like scary movies from the eighties, something with a lot of fog.", "Sure.", "No thanks."]
    rec = ["What do you like?", "Try <movie_title>Alien</movie_title>."]

    class Record:  # a DialogueRecord's turns are all the caps read
        def __init__(self, turns):
            self.turns = turns

    records = [Record([RecordTurn(role=Role.USER, action=Action.FEEDBACK, text=t) for t in user[:2]]),
               Record([RecordTurn(role=Role.RECOMMENDER, action=Action.INQUIRE, text=rec[0]),
                       RecordTurn(role=Role.USER, action=Action.FEEDBACK, text=user[2]),
                       RecordTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=rec[1]),
                       RecordTurn(role=Role.USER, action=Action.FEEDBACK, text=user[3])])]

    def count(action, text):  # by hand: the wire format after the <action> prefill
        return len(tok(format_turn(Turn(action, text))[len("<action>"):], add_special_tokens=False)["input_ids"])

    user_counts = sorted(count(Action.FEEDBACK, t) for t in user)
    caps = caps_from_records(records, {Role.USER: tok, Role.RECOMMENDER: tok}, 75)
    assert caps[Role.USER] == user_counts[2]  # nearest rank: ceil(0.75 * 4) = 3rd of 4
    assert caps[Role.RECOMMENDER] == max(count(Action.INQUIRE, rec[0]), count(Action.RECOMMEND, rec[1]))


def test_vllm_gets_the_same_settings_and_names_its_gap():
    from interplay.backends.vllm_backend import sampling_fields

    fields, gaps = sampling_fields(GenerationParams(max_new_tokens=30, temperature=0.7, top_p=0.9,
                                                    repetition_penalty=1.1, no_repeat_ngram=3, seed=5))
    assert fields["repetition_penalty"] == 1.1 and fields["top_p"] == 0.9 and fields["seed"] == 5
    assert fields["max_tokens"] == 30 and gaps == ["no_repeat_ngram"]
    greedy, none = sampling_fields(GenerationParams())
    assert greedy["seed"] is None and greedy["top_p"] == 1.0 and greedy["repetition_penalty"] == 1.0 and none == []


def test_a_run_takes_its_turn_caps_from_the_train_split(tmp_path, tiny_model_dir):
    from interplay.data.schema import DialogueRecord, Persona, RecordTurn, Target
    from interplay.prompting import load_prompt_tokenizer
    from interplay.runtime.simulation import SimulationConfig, turn_caps
    from interplay.turn_caps import caps_from_records, nearest_rank, turn_tokens

    def rec(i: int, split: str, words: int) -> DialogueRecord:
        return DialogueRecord(id=f"{split}{i}", source="t", split=split, persona=Persona(summary="Likes films."),
                              target=Target(item_id="1", title="Heat (1995)", attributes=["crime"]),
                              turns=[RecordTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text=" ".join(["film"] * words)),
                                     RecordTurn(role=Role.RECOMMENDER, action=Action.INQUIRE, text="Which one?")])

    train = [rec(i, "train", i + 1) for i in range(20)]
    (tmp_path / "train.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in train))
    (tmp_path / "test.jsonl").write_text(rec(0, "test", 200).model_dump_json() + "\n")
    cfg = SimulationConfig(user=f"llm:{tiny_model_dir}", recommender="rule", data=str(tmp_path))
    tok = load_prompt_tokenizer(str(tiny_model_dir))
    turns = [(t.role, t.action, t.text) for r in train for t in r.turns]
    expected = nearest_rank(turn_tokens(turns, tok, Role.USER), 95)
    assert turn_caps(cfg) == {Role.USER: expected}  # train split only; the rule recommender has no model
    assert caps_from_records(train, {Role.USER: tok}, 95) == {Role.USER: expected}
    assert cfg.role_generation(turn_caps(cfg))[Role.USER].max_new_tokens == min(96, expected)
    assert turn_caps(cfg.model_copy(update={"turn_cap_percentile": 0.0})) == {}
    assert turn_caps(SimulationConfig(user=f"llm:{tiny_model_dir}", recommender="rule")) == {}  # demo: no dialogues


def test_a_turn_cannot_end_on_the_words_of_an_earlier_own_turn():
    """The end of the turn is banned while the turn so far has an earlier own turn's words (case,
    punctuation and title markup aside): a short turn, or one changed only in case or spacing,
    would pass the token n-gram ban."""
    from interplay.backends.decoding_controls import RowControls, choose_tokens

    end, word = 7, 3
    logits = torch.zeros(2, 10)
    logits[:, end], logits[:, word] = 5.0, 1.0  # ending is the model's first choice
    params = GenerationParams(own_no_repeat_ngram=5, own_turns=("I like <movie_title>Heat</movie_title>!",))
    row = RowControls(params, own_ids=[[1, 2]])
    assert row.says_again("<feedback></action><response>i LIKE  heat") and not row.says_again("I like Heat a lot")
    said = {0: "<response>I like heat.", 1: "<response>I like heat a lot"}
    chosen = choose_tokens(logits, [row, row], [[1], [1]], says_again=lambda r: row.says_again(said[r]),
                           end_ids=[end])
    assert chosen.tolist() == [word, end]
    off = RowControls(GenerationParams(own_turns=params.own_turns))  # the ban off: the turn may end
    assert not off.own_words and choose_tokens(logits[:1], [off], [[1]], says_again=lambda r: True,
                                               end_ids=[end]).tolist() == [end]
