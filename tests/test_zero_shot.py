"""Zero-shot agents: the fallback reader on known answers, specs, presets, persona for the recommender."""

from __future__ import annotations

import pytest

from interplay.agent_specs import AgentSpec, model_of, sees_persona
from interplay.catalogue import Catalogue, Item
from interplay.fallback import parse_with_fallback, strip_reasoning
from interplay.protocol import Action, ProtocolError, Role

CAT = Catalogue([Item(item_id="1", title="Matrix, The (1999)"), Item(item_id="2", title="Good Will Hunting (1997)")])


@pytest.mark.parametrize("raw, role, after_rec, first, action, rule, titles", [
    ("<action><inquire></action><response>Any genre?</response>", Role.RECOMMENDER, False, False, Action.INQUIRE, None, []),
    ("<think>the user wants sci-fi</think>\n<action><recommend></action><response>Try <movie_title>The Matrix (1999)"
     "</movie_title>.</response>", Role.RECOMMENDER, False, False, Action.RECOMMEND, None, ["The Matrix (1999)"]),
    ("You should watch The Matrix (1999), a classic!", Role.RECOMMENDER, False, False, Action.RECOMMEND,
     "catalogue-title", ["The Matrix (1999)"]),
    ('Maybe "Good Will Hunting"?', Role.RECOMMENDER, False, False, Action.RECOMMEND, "catalogue-title", ["Good Will Hunting"]),
    ("What kind of films do you enjoy?", Role.RECOMMENDER, False, False, Action.INQUIRE, "question", []),
    ("Hello there, nice to meet you.", Role.RECOMMENDER, False, True, Action.GREETING, "default", []),
    ("Sounds great, I will watch it tonight.", Role.USER, True, False, Action.ACCEPT, "accept-phrase", []),
    ("Sounds great, I will watch it tonight.", Role.USER, False, False, Action.DISCLOSE_GOAL, "default", []),  # nothing to accept
    ("Hmm, I did not like that one.", Role.USER, True, False, Action.FEEDBACK, "default", []),
    ("<feedback> too violent for me", Role.USER, True, False, Action.FEEDBACK, "action-tag", []),
    ("<recommend> something good", Role.RECOMMENDER, False, False, Action.FEEDBACK, "default", []),  # no title: not a recommendation
])
def test_fallback_known_answers(raw, role, after_rec, first, action, rule, titles):
    turn = parse_with_fallback(raw, role, CAT, after_recommendation=after_rec, first_turn=first)
    assert (turn.action, turn.meta["fallback"], turn.titles) == (action, rule, titles)
    assert turn.raw == raw


def test_reasoning_is_stripped_and_empty_stays_an_error():
    assert strip_reasoning("<think>a\nb</think>ok") == "ok"
    assert strip_reasoning("fine<think>never closed") == "fine"
    with pytest.raises(ProtocolError):
        parse_with_fallback("<think>only thinking</think>  ", Role.USER, CAT)


def test_specs_and_presets():
    assert model_of(AgentSpec.parse("zero-shot:qwen3-32b")) == "Qwen/Qwen3-32B"
    assert model_of(AgentSpec.parse("zero-shot:Qwen/Qwen3-32B@http://gpu:8000/v1")) is None  # served remotely
    assert model_of(AgentSpec.parse("zero-shot-vllm:meta-llama/Llama-3.1-70B-Instruct")) == "meta-llama/Llama-3.1-70B-Instruct"
    assert sees_persona("zero-shot") and sees_persona("rule", True) and not sees_persona("rule")
    with pytest.raises(ValueError, match="model name"):
        model_of(AgentSpec.parse("zero-shot:@http://gpu:8000/v1"))


def test_vllm_backend_fails_clearly_here():
    from interplay.backends.registry import create_backend

    with pytest.raises(RuntimeError, match="vLLM"):
        create_backend("vllm", "some/model")
