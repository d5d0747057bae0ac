"""Recommender candidates: retrieval from the conversation, shown to the recommender only."""

from __future__ import annotations

import asyncio

import pytest
from transformers import AutoTokenizer

from environments.recommendation_env import EnvConfig, LocalAgentHandle, RecommendationEnv
from test_env import ScriptedRec, ScriptedUser
from interplay.candidates import CandidateRetriever, strip_candidates, with_candidates
from interplay.catalogue import Catalogue, Item
from interplay.episode import EpisodeSpec, HistoryTurn, Persona, RecommenderView, Target
from interplay.protocol import Action, Role, Turn, mark_title
from interplay.training.serialize import CONTEXT, END, inference_prompt

ITEMS = [Item(item_id="ml:1", title="Toy Story (1995)", attributes=("animation", "children", "comedy", "toys")),
         Item(item_id="ml:593", title="Silence of the Lambs, The (1991)", attributes=("crime", "horror", "thriller")),
         Item(item_id="ml:2571", title="Matrix, The (1999)", attributes=("action", "sci-fi", "cyberpunk")),
         Item(item_id="ml:356", title="Forrest Gump (1994)", attributes=("comedy", "drama", "romance")),
         Item(item_id="x:1", title="Not In The Encoder (2020)", attributes=("documentary", "cooking"))]
CATALOGUE = Catalogue(ITEMS)


def said(*texts: str) -> list[HistoryTurn]:
    turns = []
    for t in texts:
        turns.append(HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text=t))
        turns.append(HistoryTurn(role=Role.RECOMMENDER, action=Action.INQUIRE, text="Tell me more."))
    return turns


@pytest.fixture(scope="module")
def retriever(tiny_encoder):
    return CandidateRetriever(tiny_encoder, CATALOGUE)


def test_retrieval_follows_what_the_user_said(retriever):
    assert retriever.retrieve(said("An animated film for kids, with toys that come alive."), 1) == ["Toy Story (1995)"]
    assert retriever.retrieve(said("A scary crime thriller about a serial killer."), 1) == [
        "Silence of the Lambs, The (1991)"]
    assert retriever.retrieve(said("A documentary about cooking."), 1) == ["Not In The Encoder (2020)"]  # embedded now
    # titles already named are left out; nothing before the user spoke
    assert "Toy Story (1995)" not in retriever.retrieve(said(f"I loved {mark_title('Toy Story (1995)')}, toys!"), 4)
    assert retriever.retrieve([], 3) == []
    ranked = retriever.retrieve(said("Anything."), 10)
    assert sorted(ranked) == sorted(i.title for i in ITEMS)  # every item once, k capped by the catalogue


def test_popularity_prior_moves_the_popular_item_up(tiny_encoder):
    plain = CandidateRetriever(tiny_encoder, CATALOGUE).retrieve(said("A scary crime thriller."), 5)
    popular = CandidateRetriever(tiny_encoder, CATALOGUE, popularity={"Forrest Gump (1994)": 50}, prior_weight=5.0)
    assert plain[0] != "Forrest Gump (1994)" and popular.retrieve(said("A scary crime thriller."), 5)[0] == \
        "Forrest Gump (1994)"


def test_retrieval_baseline_recommends_the_top_candidate(retriever, tmp_path):
    from agents.retrieval import RetrievalRecommender
    from interplay.episode import Observation

    agent = RetrievalRecommender(str(tmp_path), catalogue=CATALOGUE, retriever=retriever)
    history = said("A scary crime thriller about a serial killer.")
    turn = agent.act(Observation(turn_index=len(history), history=history))
    assert turn.action is Action.RECOMMEND and turn.titles == ["Silence of the Lambs, The (1991)"]
    assert turn.meta["ranked_items"] == retriever.retrieve(history, 50)
    # nothing said yet: it asks; forced to recommend then, it names the train split's most named title
    assert agent.act(Observation(turn_index=0, history=[])).action is Action.INQUIRE
    from interplay.data.schema import DialogueRecord

    turns = [dict(role="user", action="greeting", text="Hi."),
             dict(role="recommender", action="recommend", text=f"See {mark_title('Forrest Gump (1994)')}.")]
    record = DialogueRecord.model_validate(dict(id="r", source="t", split="train", persona={"summary": "x"},
                                                target=None, turns=turns))
    (tmp_path / "train.jsonl").write_text(record.model_dump_json() + "\n")
    forced = agent.act(Observation(turn_index=0, history=[], allowed_actions=frozenset({Action.RECOMMEND})))
    assert forced.action is Action.RECOMMEND and forced.titles == ["Forrest Gump (1994)"]
    with pytest.raises(ValueError, match="needs a catalogue"):
        RetrievalRecommender(str(tmp_path), catalogue=Catalogue([]), retriever=retriever)


def test_env_shows_candidates_to_the_recommender_only(retriever):
    spec = EpisodeSpec(record_id="r", persona=Persona(summary="Likes horror."),
                       target=Target(item_id="ml:593", title="Silence of the Lambs, The (1991)",
                                     attributes=["crime", "horror"]))
    user = ScriptedUser([Turn(Action.DISCLOSE_GOAL, "A scary crime thriller, please."), Turn(Action.ACCEPT, "Yes.")])
    rec = ScriptedRec([Turn(Action.RECOMMEND, f"Try {mark_title('Silence of the Lambs, The (1991)')}.")])
    env = RecommendationEnv(LocalAgentHandle(user), LocalAgentHandle(rec),
                            EnvConfig(max_turns=4, candidates=retriever, candidates_k=2))
    ep = asyncio.run(env.run("e", spec, seed=0))
    assert ep.termination.value == "accepted"
    assert rec.seen[0].candidates == retriever.retrieve(rec.seen[0].history, 2)
    assert rec.seen[0].candidates[0] == "Silence of the Lambs, The (1991)"
    assert ep.turns[1].meta["candidates"] == rec.seen[0].candidates
    assert all(not obs.candidates and all(not h.candidates for h in obs.history) for obs in user.seen)


def test_recsim_prompt_shows_candidates_as_training_does(retriever, tiny_model_dir):
    from interplay.data.schema import DialogueRecord
    from interplay.training.tokenize import add_special_tokens, tokenize_record

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    add_special_tokens(tok)
    turns = [dict(role="user", action="disclose-goal", text="A scary crime thriller."),
             dict(role="recommender", action="recommend", text=f"Try {mark_title('Matrix, The (1999)')}."),
             dict(role="user", action="feedback", text="Scarier."),
             dict(role="recommender", action="recommend", text=f"Then {mark_title('Toy Story (1995)')}.")]
    record = DialogueRecord.model_validate(dict(id="r", source="t", split="train", persona={"summary": "x"},
                                                target=None, turns=turns))
    history = with_candidates([HistoryTurn(role=t.role, action=t.action, text=t.text) for t in record.turns[:3]],
                              retriever, 2)
    shown = retriever.retrieve(history, 2)
    prompt = inference_prompt(Role.RECOMMENDER, RecommenderView(episode_id="r"), history, shown)
    assert prompt.endswith(f"{CONTEXT}Candidates: {'; '.join(shown)}{END}<|recommender|>")
    assert prompt.count("Candidates:") == 2 and strip_candidates(history)[1].candidates == []
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    example = tokenize_record(record, tok, Role.RECOMMENDER, candidates=(retriever, 2))[0]["input_ids"]
    assert example[: len(ids)] == ids  # the prompt is a prefix of the training example
    assert "Candidates" not in tok.decode(tokenize_record(record, tok, Role.RECOMMENDER)[0]["input_ids"])


def test_simulation_with_candidates_logs_them_on_every_recommender_turn(tiny_encoder, tmp_path, ray_session):
    from interplay.episode_log import EPISODES_FILE, latest_episodes
    from interplay.runtime.simulation import SimulationConfig, run_simulation

    cfg = SimulationConfig(user="rule", recommender="rule", data="demo", episodes=3, max_turns=6,
                           out=str(tmp_path / "run"), concurrency=3, recommender_candidates=3,
                           candidates_encoder=str(tiny_encoder))
    run_simulation(cfg, progress=False)
    episodes = latest_episodes(tmp_path / "run" / EPISODES_FILE)
    rec_turns = [t for ep in episodes for t in ep.turns if t.role is Role.RECOMMENDER]
    assert rec_turns and all(len(t.meta["candidates"]) == 3 for t in rec_turns)
    assert all("candidates" not in t.meta for ep in episodes for t in ep.turns if t.role is Role.USER)
