"""Structured turns: the turn grammar, constrained decoding in the batched loop, and its guarantees.

Properties checked on tiny random-weight models (plain tokenizer, and the same tokenizer with the
structural tokens added as special tokens, as in trained checkpoints):
- every constrained output parses with ``parse_turn``, takes an allowed action and names only
  catalogue titles (random action sets, random catalogues: unicode, parentheses, prefixes);
- at every step before the token cap where the free greedy token is legal, the constrained
  greedy token is that token, so a legal free greedy output is reproduced token for token
  (shown directly on a tiny model trained to write one legal turn).
"""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interplay.backends.base import GenerationParams, TurnConstraint
from interplay.backends.kv_reuse import generate_reusing_prefix
from interplay.backends.transformers_backend import TransformersBackend
from interplay.catalogue import Catalogue, Item
from interplay.protocol import ROLE_ACTIONS, TITLE_REQUIRED, Action, ProtocolError, Role, legal_actions, parse_turn
from interplay.turn_grammar import GrammarError, turn_grammar

PROMPT = "<|im_start|>user\nRecommend a movie, please.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def plain(tiny_model_dir):
    return TransformersBackend(str(tiny_model_dir), dtype="float32")


@pytest.fixture(scope="module")
def special_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with the protocol's tags added as special tokens (as ``interplay train`` does)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interplay.training.tokenize import add_special_tokens

    out = tmp_path_factory.mktemp("tiny-special")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    add_special_tokens(tok, model)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def special(special_dir):
    return TransformersBackend(str(special_dir), dtype="float32")


def constrain(backend, actions, titles, role=Role.RECOMMENDER, prefill=""):
    key = Catalogue([Item(item_id=str(i), title=t) for i, t in enumerate(titles)]).key
    backend.register_catalogue(key, list(titles))
    return TurnConstraint(actions=tuple(actions), role=role, catalogue=key, prefill=prefill)


def check_legal(raw: str, actions, titles, role=Role.RECOMMENDER):
    turn = parse_turn(raw, role=role)
    assert turn.action in set(actions)
    assert all(t in titles for t in turn.titles), (turn.titles, titles)
    if turn.action in TITLE_REQUIRED:
        assert turn.titles
    return turn


# -- the grammar ----------------------------------------------------------------------------------

def test_grammar_is_derived_from_the_protocol():
    g = turn_grammar([Action.RECOMMEND, Action.INQUIRE], ["Heat (1995)", 'Say "Hi" (2000)'], Role.RECOMMENDER)
    assert '"<action>"' in g and '"<recommend>"' in g and '"<inquire>"' in g and '"<movie_title>"' in g
    assert "titled: TEXT? (title TEXT?)+" in g  # a recommendation names at least one title
    assert '"Say \\"Hi\\" (2000)"' in g  # titles are quoted literals
    # an empty catalogue: a turn may not name titles, and only non-recommending actions remain
    g = turn_grammar([Action.INQUIRE, Action.RECOMMEND], [], Role.RECOMMENDER)
    assert "title" not in g and "free: TEXT?" in g and "recommend" not in g
    # no catalogue at all: a title is any text without "<"
    g = turn_grammar([Action.RECOMMEND], None, Role.RECOMMENDER)
    assert "TITLE: /[^<]+/" in g


@pytest.mark.parametrize("actions,titles,role,message", [
    ([Action.RECOMMEND], [], Role.RECOMMENDER, "catalogue is empty"),
    ([Action.ACCEPT], ["Heat (1995)"], Role.RECOMMENDER, "may not take"),
    ([Action.RECOMMEND], ["Heat (1995)"], Role.USER, "may not take"),
    ([], ["Heat (1995)"], Role.USER, "no action"),
])
def test_unsatisfiable_requests_are_clear_errors(actions, titles, role, message):
    with pytest.raises(GrammarError, match=message):
        turn_grammar(actions, titles, role)


def test_legal_actions_follow_the_protocol():
    assert Action.ACCEPT not in legal_actions(Role.USER, recommended_before=False)
    assert Action.ACCEPT in legal_actions(Role.USER, recommended_before=True)
    assert legal_actions(Role.RECOMMENDER, False) == ROLE_ACTIONS[Role.RECOMMENDER]


def test_structural_tags_are_single_tokens_for_trained_tokenizers(special, plain):
    assert "<[" in special.constrainer.literal("<action>") and plain.constrainer.literal("<action>") == '"<action>"'


# -- property tests on tiny models ----------------------------------------------------------------

_TITLE_CHARS = st.characters(codec="utf-8", exclude_characters="<\x00", exclude_categories=("Cs", "Cc"))


@st.composite
def catalogues(draw):
    """Titles with unicode, parentheses and years, some a prefix of another."""
    base = draw(st.lists(st.text(_TITLE_CHARS, min_size=1, max_size=14).map(str.strip).filter(bool),
                         min_size=1, max_size=6, unique=True))
    titles = []
    for b in base:
        titles.append(b)
        if draw(st.booleans()):
            titles.append(f"{b} ({draw(st.integers(1900, 2030))})")  # "X" and "X (1999)": a prefix
        if draw(st.booleans()):
            titles.append(f"{b} (a.k.a. {draw(st.sampled_from(['Léon', 'Amélie', '東京', 'Ça']))})")
    return list(dict.fromkeys(titles))


@st.composite
def requests(draw):
    role = draw(st.sampled_from([Role.USER, Role.RECOMMENDER]))
    actions = draw(st.sets(st.sampled_from(sorted(ROLE_ACTIONS[role], key=lambda a: a.value)), min_size=1))
    return role, sorted(actions, key=lambda a: a.value), draw(catalogues()), draw(st.integers(0, 2**16))


@pytest.mark.parametrize("which", ["plain", "special"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests())
def test_every_constrained_output_is_a_legal_turn(request, which, req):
    backend = request.getfixturevalue(which)
    role, actions, titles, seed = req
    c = constrain(backend, actions, titles, role)
    spellable = backend.constrainer.catalogues[c.catalogue]
    # a title whose characters this tokenizer has no tokens for can never be generated
    assert set(spellable) == {t for t in titles if backend.tokenizer.decode(backend.tokenizer.encode(t)) == t}
    params = GenerationParams(max_new_tokens=16, temperature=1.0, seed=seed)  # sampled: varied paths
    if not spellable and all(a in TITLE_REQUIRED for a in actions):
        with pytest.raises(GrammarError, match="catalogue is empty"):
            backend.generate([PROMPT], params, constraints=[c])
        return
    for out in backend.generate([PROMPT, PROMPT + "Hi"], params, constraints=[c, c]):
        check_legal(out, actions, spellable, role)


def _replay_allowed(backend, constraint, ids):
    """For each generated position: (allowed mask, free logits) of the constrained matcher and the
    model, by teacher forcing the prompt + generated ids in one forward pass."""
    con = backend.constrainer
    m = con.matcher(constraint)
    prompt_ids = backend.tokenizer(PROMPT + constraint.prefill, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = backend.model(torch.tensor([prompt_ids + ids])).logits[0]
    steps = []
    for k, tok in enumerate(ids):
        allowed = con.mask([m], [False])[0]
        steps.append((allowed, logits[len(prompt_ids) + k - 1]))
        assert m.consume_token(tok)
    return steps


@pytest.mark.parametrize("which", ["plain", "special"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=requests())
def test_constrained_greedy_takes_the_free_greedy_token_whenever_it_is_legal(request, which, req):
    backend = request.getfixturevalue(which)
    role, actions, titles, _ = req
    c = constrain(backend, actions, titles, role)
    titles = backend.constrainer.catalogues[c.catalogue]
    if not titles and all(a in TITLE_REQUIRED for a in actions):
        return  # unsatisfiable: the previous test checks the error
    params = GenerationParams(max_new_tokens=20)
    with torch.inference_mode():  # the generated ids themselves (re-tokenizing the text may differ)
        ids = generate_reusing_prefix(backend.model, backend.tokenizer, [PROMPT], params, [None], None,
                                      constraints=[c], constrainer=backend.constrainer)[0]
    check_legal(backend.tokenizer.decode(ids), actions, titles, role)
    steps = _replay_allowed(backend, c, ids)
    for k, ((allowed, logits), tok) in enumerate(zip(steps, ids)):
        if k >= params.max_new_tokens:
            break  # past the cap the row is being closed
        assert allowed[tok]
        best = int(logits.masked_fill(~allowed, float("-inf")).argmax())  # the free argmax when it is legal
        # equal, up to a float tie between one full forward pass and the incremental decode
        assert tok == best or abs(float(logits[tok] - logits[best])) < 1e-4, f"step {k}: {tok} chosen, {best} best"
        if allowed[int(logits.argmax())]:
            assert best == int(logits.argmax())


@pytest.fixture(scope="module")
def fluent_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model trained for a few seconds to write one legal turn after PROMPT."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-fluent")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    turn = "<action><recommend></action><response>Try <movie_title>Léon (1994)</movie_title> tonight.</response>"
    ids = torch.tensor([tok(PROMPT + turn, add_special_tokens=False)["input_ids"]])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, turn


def test_a_legal_free_greedy_turn_is_reproduced_token_for_token(fluent_dir):
    path, turn = fluent_dir
    backend = TransformersBackend(str(path), dtype="float32", prefix_cache_mb=64)
    params = GenerationParams(max_new_tokens=40)
    free = backend.generate([PROMPT], params)[0]
    assert free == turn  # the model writes the legal turn by itself
    titles = ["Léon (1994)", "Léon", "Heat (1995)"]
    c = constrain(backend, [Action.RECOMMEND, Action.INQUIRE], titles)
    assert backend.generate([PROMPT], params, constraints=[c])[0] == free
    # and token for token, with the KV store on and a free request in the same batch
    both = backend.generate([PROMPT, PROMPT], params, cache_keys=["a", "b"], constraints=[c, None])
    assert both == [free, free]
    # narrowed to inquire, the same model must leave its favourite turn
    c2 = constrain(backend, [Action.INQUIRE], titles)
    forced = backend.generate([PROMPT], params, constraints=[c2])[0]
    assert check_legal(forced, [Action.INQUIRE], titles).action is Action.INQUIRE


# -- the decode loop: batching, reuse, seeding, the token cap --------------------------------------

def test_constrained_batches_equal_one_by_one_and_reuse_equals_no_reuse(tiny_model_dir):
    titles = ["Heat (1995)", "Heat", "Amélie (2001)", "Ronin (1998)"]
    prompts = [PROMPT, PROMPT + "I like crime.", "Hi", PROMPT]
    params = GenerationParams(max_new_tokens=14)
    plain_b = TransformersBackend(str(tiny_model_dir), dtype="float32")
    reuse_b = TransformersBackend(str(tiny_model_dir), dtype="float32", prefix_cache_mb=64,
                                  prefix_cache_dtype="model")
    cons = constrain(plain_b, [Action.RECOMMEND], titles)
    constrain(reuse_b, [Action.RECOMMEND], titles)  # the same catalogue, registered with both
    mixed = [cons, cons, None, constrain(plain_b, [Action.INQUIRE, Action.FEEDBACK], titles)]
    batched = plain_b.generate(prompts, params, constraints=mixed)
    single = [plain_b.generate([p], params, constraints=[c])[0] for p, c in zip(prompts, mixed)]
    assert batched == single
    for out, c in zip(batched, mixed):
        if c is not None:
            check_legal(out, c.actions, titles)
    # second turn of each conversation: the stored prefix is reused, the outputs do not change
    keys = ["e1", "e2", "e3", "e4"]
    first = reuse_b.generate(prompts, params, cache_keys=keys, constraints=mixed)
    assert first == batched
    nxt = [p + o + "<|im_end|>\n<|im_start|>user\nAnd another?<|im_end|>\n<|im_start|>assistant\n"
           for p, o in zip(prompts, first)]
    again = reuse_b.generate(nxt, params, cache_keys=keys, constraints=mixed)
    assert reuse_b.prefix_store.stats["reused_tokens"] > 0
    assert again == plain_b.generate(nxt, params, constraints=mixed)


def test_constrained_sampling_does_not_depend_on_the_batch(plain):
    titles = ["Heat (1995)", "Amélie (2001)"]
    c = constrain(plain, [Action.RECOMMEND, Action.INQUIRE], titles)
    params = GenerationParams(max_new_tokens=12, temperature=1.0)
    alone = plain.generate([PROMPT], params, seeds=[7], constraints=[c])
    batched = plain.generate(["Hi", PROMPT, PROMPT], params, seeds=[3, 7, 9], constraints=[c, c, c])
    assert batched[1] == alone[0]


def test_a_turn_at_the_token_cap_is_closed_legally(plain):
    titles = ["The Lord of the Rings: The Fellowship of the Ring (2001)", "Heat (1995)"]
    c = constrain(plain, [Action.RECOMMEND], titles)
    for cap in (1, 3, 6):
        out = plain.generate([PROMPT], GenerationParams(max_new_tokens=cap), constraints=[c])[0]
        check_legal(out, [Action.RECOMMEND], titles)
        n = len(plain.tokenizer(out, add_special_tokens=False)["input_ids"])
        assert n <= cap + plain.constrainer.close_budget([c])


def test_a_prefill_that_cannot_start_a_legal_turn_is_refused(plain):
    c = constrain(plain, [Action.INQUIRE], ["Heat (1995)"], prefill="Sure! ")
    with pytest.raises(GrammarError, match="prefill"):
        plain.validate_constraint(c)


def test_a_bad_constraint_fails_its_own_request_not_the_batch(plain):
    from interplay.runtime.model_server import ModelServer

    server = ModelServer(None, backend_factory=lambda: plain, max_batch=8)
    good = constrain(plain, [Action.INQUIRE], ["Heat (1995)"])
    bad = constrain(plain, [Action.RECOMMEND], [])  # a recommendation from an empty catalogue

    async def go():
        params = GenerationParams(max_new_tokens=8)
        return await asyncio.gather(server.generate([PROMPT], params, constraints=[good]),
                                    server.generate([PROMPT], params, constraints=[bad]), return_exceptions=True)

    ok, err = asyncio.run(go())
    assert isinstance(err, GrammarError) and "catalogue is empty" in str(err)
    check_legal(ok[0], [Action.INQUIRE], ["Heat (1995)"])


# -- agents -----------------------------------------------------------------------------------------

def test_agents_narrow_one_turn_and_log_how_it_was_decoded(plain):
    from agents.llm import RecommenderSimulator
    from interplay.episode import Observation, RecommenderView
    from interplay.prompting import load_prompt_tokenizer

    cat = Catalogue([Item(item_id="1", title="Heat (1995)"), Item(item_id="2", title="Ronin (1998)")])
    tok = load_prompt_tokenizer(plain.model_path)
    agent = RecommenderSimulator(plain, tok, GenerationParams(max_new_tokens=12), catalogue=cat)
    agent.reset(RecommenderView(episode_id="e"))
    turn = agent.act(Observation(history=[], turn_index=0, allowed_actions=frozenset({Action.RECOMMEND})))
    assert turn.action is Action.RECOMMEND and turn.titles and set(turn.titles) <= {"Heat (1995)", "Ronin (1998)"}
    assert turn.meta["decoding"] == "constrained"
    with pytest.raises(GrammarError, match="may not take"):
        agent.act(Observation(history=[], turn_index=0, allowed_actions=frozenset({Action.ACCEPT})))
    free = RecommenderSimulator(plain, tok, GenerationParams(max_new_tokens=12, decoding="free"), catalogue=cat)
    free.reset(RecommenderView(episode_id="e"))
    try:
        assert free.act(Observation(history=[], turn_index=0)).meta["decoding"] == "free"
    except ProtocolError:
        pass  # a random model's free text rarely parses; that is what constrained decoding is for


def test_titles_new_never_names_a_title_already_named_in_the_episode(plain):
    """``titles="new"``: a recommendation names no title either side has named in the episode
    (matched by catalogue id: the history spells them its own way), sampled over seeds; without the
    setting the same turns name them again; a user's turns are never narrowed by it."""
    from agents.llm import RecommenderSimulator, UserSimulator
    from interplay.episode import HistoryTurn, Observation, RecommenderView
    from interplay.prompting import load_prompt_tokenizer
    from interplay.protocol import mark_title

    titles = ["Heat (1995)", "Ronin (1998)", "Alien (1979)", "Up (2009)", "Big (1988)"]
    cat = Catalogue([Item(item_id=str(i), title=t) for i, t in enumerate(titles)])
    tok = load_prompt_tokenizer(plain.model_path)
    history = [HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text=f"I loved {mark_title('heat')}."),
               HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=f"Try {mark_title('Ronin 1998')}."),
               HistoryTurn(role=Role.USER, action=Action.FEEDBACK, text="Seen it.")]
    obs = lambda seed: Observation(history=history, turn_index=3 + seed,  # noqa: E731
                                   allowed_actions=frozenset({Action.RECOMMEND}))
    new = RecommenderSimulator(plain, tok, GenerationParams(max_new_tokens=12, temperature=1.5, titles="new"),
                               catalogue=cat)
    anywhere = RecommenderSimulator(plain, tok, GenerationParams(max_new_tokens=12, temperature=1.5), catalogue=cat)
    assert new.constraint(obs(0)).exclude == ("Heat (1995)", "Ronin (1998)")
    assert anywhere.constraint(obs(0)).exclude == ()
    named_new, named_any = [], []
    for agent, named in ((new, named_new), (anywhere, named_any)):
        agent.reset(RecommenderView(episode_id="e"))
        for seed in range(16):
            named += agent.act(obs(seed)).titles
    assert named_new and not {"Heat (1995)", "Ronin (1998)"} & set(named_new)
    assert {"Heat (1995)", "Ronin (1998)"} & set(named_any)  # the plain run names them again
    user = UserSimulator(plain, tok, GenerationParams(max_new_tokens=12, titles="new"), catalogue=cat)
    assert user.named_titles(obs(0)) == () and user.constraint(
        Observation(history=history, turn_index=3)).exclude == ()


def test_narrowed_grammars_kept_within_a_title_budget(tiny_model_dir, monkeypatch):
    """Grammars narrowed per turn are kept (a turn's validation and decoding compile once), but an
    exclusion's grammar holds nearly the whole catalogue, so the kept ones stay within
    ``NARROWED_TITLES`` titles, oldest out first."""
    from transformers import AutoTokenizer

    from interplay.backends import constrained
    from interplay.backends.constrained import TurnConstrainer

    monkeypatch.setattr(constrained, "NARROWED_TITLES", 10)
    titles = ["Heat (1995)", "Ronin (1998)", "Alien (1979)", "Up (2009)", "Big (1988)"]
    c = TurnConstrainer(AutoTokenizer.from_pretrained(tiny_model_dir))
    c.register_catalogue("k", titles)
    base = TurnConstraint(actions=(Action.RECOMMEND,), role=Role.RECOMMENDER, catalogue="k")
    narrowed = [base.model_copy(update={"exclude": (t,)}) for t in titles[:3]]  # 4 titles each
    for n in narrowed:
        c.validate(n)
        c.validate(n)  # kept: compiled once
    assert c.stats["grammars"] == 3
    assert list(c._narrowed) == narrowed[1:] and sum(c._narrowed_titles.values()) == 8
    c.validate(narrowed[0])  # evicted: compiled again
    assert c.stats["grammars"] == 4 and list(c._narrowed) == [narrowed[2], narrowed[0]]


def test_titles_narrowed_to_the_candidates_shown(plain):
    """``titles="candidates"``: a recommendation names only the turn's candidates (sampled over
    seeds), its ranking puts them first in their exact likelihood order, then the rest of the
    catalogue; without the setting the same turn may name any title; unknown titles are ignored."""
    from agents.llm import RecommenderSimulator
    from interplay.episode import Observation, RecommenderView
    from interplay.prompting import load_prompt_tokenizer
    from interplay.protocol import TITLE_CLOSE, TITLE_OPEN

    titles = ["Heat (1995)", "Ronin (1998)", "Alien (1979)", "Up (2009)", "Big (1988)"]
    cat = Catalogue([Item(item_id=str(i), title=t) for i, t in enumerate(titles)])
    tok = load_prompt_tokenizer(plain.model_path)
    shown = ["Ronin (1998)", "Up (2009)", "Not A Film (2099)"]
    obs = lambda seed: Observation(history=[], turn_index=seed, allowed_actions=frozenset({Action.RECOMMEND}),  # noqa: E731
                                   candidates=shown, rank_items=4)
    narrowed = RecommenderSimulator(plain, tok, GenerationParams(max_new_tokens=12, temperature=1.5,
                                                                 titles="candidates"), catalogue=cat)
    anywhere = RecommenderSimulator(plain, tok, GenerationParams(max_new_tokens=12, temperature=1.5), catalogue=cat)
    named_narrow, named_any = set(), set()
    for agent, named in ((narrowed, named_narrow), (anywhere, named_any)):
        agent.reset(RecommenderView(episode_id="e"))
        for seed in range(12):
            turn = agent.act(obs(seed))
            named.update(turn.titles)
            if agent is narrowed:
                assert turn.titles and set(turn.titles) <= {"Ronin (1998)", "Up (2009)"}
                ranked = turn.meta["ranked_items"]
                head = sorted(ranked[:2])
                assert head == ["Ronin (1998)", "Up (2009)"] and len(ranked) == 4 and len(set(ranked)) == 4
    assert named_narrow and named_any - {"Ronin (1998)", "Up (2009)"}  # the plain run strays off the candidates
    # the head's order is the exact likelihood order at the title
    prompt = narrowed.prompt(obs(0)) + "<recommend></action><response>" + TITLE_OPEN
    scores = plain.score_continuations([prompt], [[t + TITLE_CLOSE for t in ("Ronin (1998)", "Up (2009)")]])[0]
    ranked = narrowed.rank(obs(0), "<recommend></action><response>" + TITLE_OPEN, 4)
    assert ranked[:2] == (["Ronin (1998)", "Up (2009)"] if scores[0] >= scores[1] else ["Up (2009)", "Ronin (1998)"])
    assert narrowed.constraint(obs(0)).titles == ("Ronin (1998)", "Up (2009)")
    assert anywhere.constraint(obs(0)).titles is None
    # a constraint narrowed to titles outside its catalogue allows no recommendation: a clear error
    key = cat.key
    plain.register_catalogue(key, titles)
    bad = TurnConstraint(actions=(Action.RECOMMEND,), role=Role.RECOMMENDER, catalogue=key, titles=("Nope (1900)",))
    with pytest.raises(GrammarError):
        plain.validate_constraint(bad)
    with pytest.raises(ValueError, match="recommender-candidates"):
        from interplay.evaluation.config import EvalConfig

        EvalConfig(kind="recommender", agent="rule", data="d", out="o", generation=GenerationParams(titles="candidates"))


def test_the_constrained_default_gives_legal_turns_in_a_real_run(tmp_path, tiny_model_dir):
    import json

    from test_simulation import simulate

    from interplay.episode_log import read_episodes
    from interplay.simulation_data import load_demo

    out = tmp_path / "llm"
    spec = f"llm:{tiny_model_dir}"
    simulate("--user", spec, "--recommender", spec, "--episodes", 4, "--max-turns", 4, "--max-new-tokens", 12,
             "--concurrency", 4, "--out", out)
    episodes = list(read_episodes(out / "episodes.jsonl"))
    titles = {it.title for it in load_demo().catalogue}
    assert len(episodes) == 4
    for ep in episodes:
        assert ep.termination.value in {"accepted", "max_turns"}
        for t in ep.turns:
            assert t.action is not None and not t.failed_attempts and t.meta["decoding"] == "constrained"
            assert set(t.titles) <= titles
        assert set(ep.recommended_items) <= titles
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parsed_turn_rate"] == 1.0 and summary["termination"].get("protocol_error", 0) == 0
    assert json.loads((out / "config.json").read_text())["generation"]["decoding"] == "constrained"
    shutil.rmtree(out)


def test_the_rest_of_a_turn_after_a_prefilled_action_tag(plain):
    """The grammar engines get when the prompt already ends with ``<action>`` (vLLM)."""
    import llguidance

    g = turn_grammar([Action.RECOMMEND, Action.INQUIRE], ["Heat (1995)"], after_action_open=True)
    m = llguidance.LLMatcher(plain.constrainer.llt, g, log_level=0)
    rest = "<recommend></action><response>Try <movie_title>Heat (1995)</movie_title>.</response>"
    assert m.consume_tokens(plain.tokenizer(rest, add_special_tokens=False)["input_ids"]) and m.is_accepting()
    m = llguidance.LLMatcher(plain.constrainer.llt, g, log_level=0)
    ids = plain.tokenizer("<action>", add_special_tokens=False)["input_ids"]
    assert m.try_consume_tokens(ids) < len(ids)  # "<" may start "<recommend>", "<action>" may not


# -- OpenAI-compatible servers: the grammar is sent, and servers that ignore it are detected --------

class _Recorder:
    """A loopback OpenAI-compatible endpoint standing in for a vLLM server (none runs here): it
    records each request body and answers with the next canned reply, or an HTTP error code."""

    def __init__(self, replies):
        import http.server
        import json
        import threading

        self.bodies, self.replies = [], list(replies)
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rec.bodies.append(body)
                reply = rec.replies.pop(0)
                if isinstance(reply, int):
                    self.send_response(reply)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": "unknown field"}}).encode())
                    return
                out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": reply}}]}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def _zero_shot_on(url):
    from agents.zero_shot import ZeroShotRecommender
    from interplay.backends.openai_http import OpenAIChatBackend
    from interplay.episode import RecommenderView

    cat = Catalogue([Item(item_id="1", title="Heat (1995)")])
    backend = OpenAIChatBackend(url, "m", max_retries=0)
    agent = ZeroShotRecommender(backend, None, GenerationParams(max_new_tokens=30), catalogue=cat)
    agent.reset(RecommenderView(episode_id="e"))
    return agent, backend


def test_http_sends_the_grammar_and_trusts_a_server_that_applies_it():
    from interplay.episode import Observation

    legal = "<action><recommend></action><response>Try <movie_title>Heat (1995)</movie_title>.</response>"
    srv = _Recorder([legal, legal])
    try:
        agent, backend = _zero_shot_on(srv.url)
        obs = Observation(history=[], turn_index=0, allowed_actions=frozenset({Action.RECOMMEND}))
        for _ in range(2):
            turn = agent.act(obs)
            assert turn.action is Action.RECOMMEND and turn.meta["decoding"] == "constrained"
        grammar = srv.bodies[0]["structured_outputs"]["grammar"]
        assert '"<recommend>"' in grammar and '"Heat (1995)"' in grammar and '"<inquire>"' not in grammar
        assert backend.grammar_supported is True
    finally:
        srv.close()


@pytest.mark.parametrize("first", [400, "Sure! Try Heat (1995), it is great."])
def test_http_falls_back_to_parse_after_when_a_server_refuses_or_ignores_the_grammar(first):
    from interplay.episode import Observation

    srv = _Recorder([first, "Sure! Try Heat (1995), it is great."] if first == 400 else [first, "Hello?"])
    try:
        agent, backend = _zero_shot_on(srv.url)
        turn = agent.act(Observation(history=[], turn_index=0))
        assert backend.grammar_supported is False
        assert turn.meta["decoding"] == "parse-after" and turn.meta["fallback"]  # read by the fallback rules
        if first == 400:  # refused: the same request again without the field
            assert "structured_outputs" in srv.bodies[0] and "structured_outputs" not in srv.bodies[1]
        else:  # ignored: the grammar is not sent again
            agent.act(Observation(history=[], turn_index=1))
            assert "structured_outputs" not in srv.bodies[1]
    finally:
        srv.close()


# -- the recommender evaluation: a forced recommendation, a ranking from any LLM recommender --------

def test_evaluate_recommender_forces_a_catalogue_recommendation_and_ranks_the_catalogue(
        tiny_model_dir, tmp_path, ray_session, tiny_encoder):
    from test_evaluation import ITEMS, records

    from interplay.evaluation.config import EvalConfig
    from interplay.evaluation.evaluate import evaluate_recommender

    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records()))
    (data / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    titles = {i.title for i in ITEMS}
    common = dict(kind="recommender", agent=f"llm:{tiny_model_dir}", data=str(data), matchscore_encoder=str(tiny_encoder),
                  concurrency=2, rank_items=50)
    m = evaluate_recommender(EvalConfig(**common, out=str(tmp_path / "forced"),
                                        generation=GenerationParams(max_new_tokens=16)), progress=False)
    rows = [json.loads(line) for line in (tmp_path / "forced" / "recommendations.jsonl").read_text().splitlines()]
    assert m["n"] == 2 and m["parse_rate"] == 1.0 and m["fallback_rate"] == 0.0
    assert m["no_recommendation"] == 0 and m["unmatched_titles"] == 0 and m["decoding"] == {"constrained": 2}
    for r in rows:
        assert r["action"] == "recommend" and r["titles"] and set(r["titles"]) <= titles
        assert sorted(r["ranked_items"]) == sorted(titles)  # the whole 4-title catalogue, ranked
    assert m["recall@10"] == 1.0 and m["recall@50"] == 1.0  # so every target is in the top 10
    # the beam ranking through the same path (a beam at least k wide covers this 4-title trie: the
    # exact order, and the setting is recorded)
    evaluate_recommender(EvalConfig(**common, rank_beam=2, out=str(tmp_path / "beam"),
                                           generation=GenerationParams(max_new_tokens=16)), progress=False)
    beam_rows = [json.loads(line) for line in (tmp_path / "beam" / "recommendations.jsonl").read_text().splitlines()]
    assert [r["ranked_items"] for r in beam_rows] == [r["ranked_items"] for r in rows]
    assert json.loads((tmp_path / "beam" / "config.json").read_text())["rank_beam"] == 2
    # two candidates shown, titles narrowed to them: each recommendation is one of its turn's
    # candidates (logged with the row), and they head its ranking
    evaluate_recommender(EvalConfig(**common, out=str(tmp_path / "cands"), recommender_candidates=2,
                                    generation=GenerationParams(max_new_tokens=16, titles="candidates")),
                         progress=False)
    cand_rows = [json.loads(line) for line in (tmp_path / "cands" / "recommendations.jsonl").read_text().splitlines()]
    assert len(cand_rows) == 2
    for r in cand_rows:
        assert len(r["candidates"]) == 2 and r["titles"] and set(r["titles"]) <= set(r["candidates"])
        assert sorted(r["ranked_items"][:2]) == sorted(r["candidates"]) and sorted(r["ranked_items"]) == sorted(titles)
    # free decoding: the same random model rarely writes a legal turn, and nothing is forced
    free = evaluate_recommender(EvalConfig(**common, out=str(tmp_path / "free"), force_recommend=False,
                                           generation=GenerationParams(max_new_tokens=16, decoding="free")),
                                progress=False)
    assert free["n"] == 2 and free["forced_recommend"] is False and free["no_recommendation"] >= 1
    # a forced recommendation from an empty catalogue: a clear error before any work
    (data / "catalogue.jsonl").write_text("")
    with pytest.raises(GrammarError, match="catalogue is empty"):
        evaluate_recommender(EvalConfig(**common, out=str(tmp_path / "empty")), progress=False)
    assert not (tmp_path / "empty" / "recommendations.jsonl").exists()


# -- the trie-factored title lexeme (large catalogues) ---------------------------------------------

def _accepts(llt, tok, grammar: str, text: str) -> bool:
    import llguidance

    m = llguidance.LLMatcher(llt, grammar, log_level=0)
    assert not m.is_error(), m.get_error()
    return m.consume_tokens(tok(text, add_special_tokens=False)["input_ids"]) and m.is_accepting()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(titles=catalogues(), extra=st.text(_TITLE_CHARS, min_size=1, max_size=3))
def test_trie_title_lexeme_accepts_exactly_the_catalogue(plain, titles, extra):
    """The factored regex spells every title (unicode, regex metacharacters, prefixes of one
    another) and nothing else: a title with extra characters, or a cut one, is refused unless it
    is itself a title."""
    from interplay.turn_grammar import title_lexeme

    tok, llt = plain.tokenizer, plain.constrainer.llt
    titles = [t for t in titles if tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t]
    if not titles:
        return
    grammar = f'start: "<movie_title>" TITLE "</movie_title>"\nTITLE: {title_lexeme(titles, "trie")}\n'
    for t in titles:
        assert _accepts(llt, tok, grammar, f"<movie_title>{t}</movie_title>"), t
        for other in (t + extra, t[:-1]):
            if other and other not in titles and "<" not in other:
                assert not _accepts(llt, tok, grammar, f"<movie_title>{other}</movie_title>"), other


def test_large_catalogues_use_the_trie_and_small_ones_stay_flat():
    from interplay.turn_grammar import FLAT_TITLES_MAX, title_lexeme

    assert title_lexeme(["Heat (1995)", "Heat (1995) II", "A/B.c"], "trie") == r"/(?:A\/B\.c|Heat \(1995\)(?: II)?)/"
    small = [f"Film {i}" for i in range(FLAT_TITLES_MAX)]
    assert title_lexeme(small).startswith('"Film 0" | ')
    assert title_lexeme(small + ["Film X"]).startswith("/Film (?:")
    with pytest.raises(ValueError, match="shape"):
        title_lexeme(small, "ball")
