"""Grounded observations: the user sees what a recommended film is, never who the target is."""

from __future__ import annotations

import asyncio

import pytest
from transformers import AutoTokenizer

from environments.recommendation_env import EnvConfig, LocalAgentHandle, RecommendationEnv
from test_env import ScriptedRec, ScriptedUser
from interplay.catalogue import Catalogue, Item
from interplay.episode import EpisodeSpec, HistoryTurn, ItemFacts, Persona, Target, UserView, find_target_leak
from interplay.grounding import facts_text, ground_history, item_facts, strip_grounding
from interplay.evaluation.tasks import record_resolver
from interplay.prompting import build_messages
from interplay.protocol import Action, Role, Turn, mark_title
from interplay.training.serialize import CONTEXT, END, inference_prompt
from interplay.training.tokenize import add_special_tokens, tokenize_record

POTTER = Target(item_id="ml:4896", title="Harry Potter and the Sorcerer's Stone (2001)",
                attributes=["fantasy", "magic"], attribute_text="A fantasy film about a school of magic.")
CATALOGUE = Catalogue([
    Item(item_id="ml:4896", title=POTTER.title, attributes=("fantasy", "magic", "harry potter")),
    Item(item_id="ml:5816", title="Harry Potter and the Chamber of Secrets (2002)",
         attributes=("fantasy", "harry potter", "magic", "harry", "potter", "sequel", "fantasy")),
    Item(item_id="ml:6", title="Heat (1995)", attributes=("action", "crime", "heist")),
])
SPEC = EpisodeSpec(record_id="r1", persona=Persona(summary="Likes magic."), target=POTTER)


def test_facts_of_a_named_item_known_answer():
    heat = item_facts("heat (1995)", CATALOGUE, POTTER)
    assert heat == ItemFacts(title="Heat (1995)", attributes=["action", "crime", "heist"])
    # the sequel's franchise keyword would name the target: dropped, alone and when split in two
    sequel = item_facts("Harry Potter and the Chamber of Secrets (2002)", CATALOGUE, POTTER)
    assert sequel.attributes == ["fantasy", "magic", "harry", "sequel"]
    assert find_target_leak(", ".join(sequel.attributes), POTTER) is None
    assert item_facts("Heat (1995)", CATALOGUE, POTTER, max_attributes=2).attributes == ["action", "crime"]
    assert item_facts("Not A Film (1999)", CATALOGUE, POTTER) is None
    assert facts_text([heat]) == "About Heat (1995): action, crime, heist."


def test_only_recommender_turns_are_grounded():
    history = [HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text=f"I loved {mark_title('Heat (1995)')}."),
               HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                           text=f"{mark_title('Heat (1995)')} or {mark_title('Heat (1995)')} or {mark_title('Nope (1900)')}")]
    grounded = ground_history(history, CATALOGUE, POTTER)
    assert grounded[0].about == [] and [f.title for f in grounded[1].about] == ["Heat (1995)"]
    assert strip_grounding(grounded) == history


@pytest.mark.parametrize("grounded", [True, False])
def test_env_grounds_the_user_only_and_logs_what_it_showed(grounded):
    user = ScriptedUser([Turn(Action.DISCLOSE_GOAL, "Something magical."), Turn(Action.FEEDBACK, "Too violent."),
                         Turn(Action.ACCEPT, "Yes!")])
    rec = ScriptedRec([Turn(Action.RECOMMEND, f"Try {mark_title('Heat (1995)')}."),
                       Turn(Action.RECOMMEND, f"Then {mark_title(POTTER.title)}.")])
    env = RecommendationEnv(LocalAgentHandle(user), LocalAgentHandle(rec),
                            EnvConfig(max_turns=6, grounding=CATALOGUE if grounded else None))
    ep = asyncio.run(env.run("ep", SPEC, seed=0))
    assert ep.termination.value == "accepted"
    shown = [[f.title for h in obs.history for f in h.about] for obs in user.seen]
    assert shown == ([[], ["Heat (1995)"], ["Heat (1995)", POTTER.title]] if grounded else [[], [], []])
    assert all(h.about == [] for obs in rec.seen for h in obs.history)  # the recommender's view: the paper's
    logged = [t.meta.get("about") for t in ep.turns if t.role is Role.RECOMMENDER]
    assert logged == ([[{"title": "Heat (1995)", "attributes": ["action", "crime", "heist"]}],
                       [{"title": POTTER.title, "attributes": ["fantasy", "magic"]}]] if grounded else [None, None])


def test_user_prompts_carry_the_facts_and_recommender_prompts_do_not(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    add_special_tokens(tok)
    view = UserView(episode_id="e", persona=SPEC.persona, target_attributes=POTTER.attributes,
                    target_attribute_text=POTTER.attribute_text)
    history = ground_history([HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text="Magic, please."),
                              HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                                          text=f"Try {mark_title('Heat (1995)')}.")], CATALOGUE, POTTER)
    line = "About Heat (1995): action, crime, heist."
    assert inference_prompt(Role.USER, view, history).endswith(f"{END}{CONTEXT}{line}{END}<|user|>")
    assert line in build_messages(Role.USER, view, history)[-1]["content"]
    from interplay.episode import RecommenderView

    rec_view = RecommenderView(episode_id="e")
    assert "About" not in inference_prompt(Role.RECOMMENDER, rec_view, history)
    assert all("About" not in m["content"] for m in build_messages(Role.RECOMMENDER, rec_view, history)[1:])


def test_training_and_inference_share_the_grounded_serialisation(tiny_model_dir):
    from interplay.data.schema import DialogueRecord
    from interplay.training.tokenize import record_view

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    add_special_tokens(tok)
    turns = [dict(role="user", action="disclose-goal", text="Magic, please."),
             dict(role="recommender", action="recommend", text=f"Try {mark_title('Heat (1995)')}."),
             dict(role="user", action="feedback", text="Too violent.")]
    record = DialogueRecord.model_validate(dict(id="r1", source="test", split="test", persona=SPEC.persona.model_dump(),
                                                target=dict(title=POTTER.title, item_id=POTTER.item_id,
                                                            attributes=POTTER.attributes,
                                                            attribute_text=POTTER.attribute_text),
                                                turns=turns))
    history = ground_history([HistoryTurn(role=t.role, action=t.action, text=t.text) for t in record.turns[:2]],
                             CATALOGUE, POTTER)
    prompt = tok(inference_prompt(Role.USER, record_view(record, Role.USER), history),
                 add_special_tokens=False)["input_ids"]
    example = tokenize_record(record, tok, Role.USER, grounding=CATALOGUE)[0]["input_ids"]
    assert example[: len(prompt)] == prompt
    assert tokenize_record(record, tok, Role.USER)[0]["input_ids"] != example  # ungrounded: no facts
    # --grounding-match: the facts also count the target attributes the item shows, in training
    # and at inference alike (Heat shows none of Potter's)
    matched = inference_prompt(Role.USER, record_view(record, Role.USER), history, match=True)
    assert f"About Heat (1995): action, crime, heist. Matches 0 of your {len(POTTER.attributes)} wishes." in matched
    example = tokenize_record(record, tok, Role.USER, grounding=CATALOGUE, grounding_match=True)[0]["input_ids"]
    assert example[: len(tok(matched, add_special_tokens=False)["input_ids"])] == \
        tok(matched, add_special_tokens=False)["input_ids"]


def test_match_counts_and_the_checkpoint_decides_the_layout(tiny_model_dir, tmp_path):
    """``matches`` counts distinct wanted attributes case-insensitively; an agent on a checkpoint
    trained with --grounding-match reads the counts, one trained without does not."""
    import json
    import shutil

    from interplay.agent_specs import AgentContext, AgentSpec, build_agent
    from interplay.backends.base import GenerationParams
    from interplay.episode import ItemFacts, Observation
    from interplay.grounding import facts_text, matches

    heat = ItemFacts(title="Heat (1995)", attributes=["action", "crime", "heist"])
    assert matches(heat, ["Crime", "heist", "romance", "crime"]) == 2
    assert facts_text([heat], ["Crime", "heist", "romance", "crime"]) == \
        "About Heat (1995): action, crime, heist. Matches 2 of your 3 wishes."
    assert facts_text([heat]) == "About Heat (1995): action, crime, heist."
    view = UserView(episode_id="e", persona=SPEC.persona, target_attributes=["crime", "heist"],
                    target_attribute_text="A crime heist.")
    history = ground_history([HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text="A heist?"),
                              HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                                          text=f"Try {mark_title('Heat (1995)')}.")], CATALOGUE, POTTER)
    prompts = {}
    for match in (True, False):
        ckpt = tmp_path / f"ckpt-{match}"
        shutil.copytree(tiny_model_dir, ckpt)
        (ckpt / "interplay_training.json").write_text(json.dumps(
            {"config": {"role": "user", "grounded": True, "grounding_match": match}}))
        tok = AutoTokenizer.from_pretrained(ckpt)
        agent = build_agent(AgentSpec.parse(f"usersim:{ckpt}"),
                            AgentContext(Role.USER, str(ckpt), CATALOGUE, 0, GenerationParams(), None, tok))
        agent.reset(view)
        prompts[match] = agent.prompt(Observation(history=history, turn_index=2))
    assert "About Heat (1995): action, crime, heist. Matches 2 of your 2 wishes." in prompts[True]
    assert "About Heat (1995): action, crime, heist." in prompts[False] and "Matches" not in prompts[False]


def test_grounding_never_carries_the_target_in_any_record_of_any_source(built_sources):
    """Every recorded recommendation of every record with a target, grounded as a user sees it:
    no item id, and no attribute text that reveals the target's title (the title a recommender
    named is in the dialogue already)."""
    from interplay.data.build import read_catalogue, read_records

    built = built_sources
    facts = target_named = targets_recommended = 0
    for source in ("redial", "inspired", "iard"):
        catalogue = read_catalogue(built / source)
        for rec in read_records(built / source):
            if rec.target is None:
                continue
            history = ground_history([HistoryTurn(role=t.role, action=t.action, text=t.text) for t in rec.turns],
                                     catalogue, rec.target, resolve=record_resolver(rec, catalogue))
            target_title = catalogue.get(rec.target.item_id).title if catalogue.get(rec.target.item_id) else None
            for h in history:
                for f in h.about:
                    facts += 1
                    target_named += f.title == target_title
                    assert rec.target.item_id not in f.model_dump_json()
                    assert find_target_leak(", ".join(f.attributes), rec.target) is None, (rec.id, f)
                # a target the catalogue has gets its facts wherever a recommender names it
                if h.role is Role.RECOMMENDER and target_title and \
                        any(rec.item_id(x) == rec.target.item_id for x in h.titles):
                    targets_recommended += 1
                    assert target_title in [f.title for f in h.about], (rec.id, h.text)
    assert facts > 1800 and target_named > 700 and targets_recommended == target_named
