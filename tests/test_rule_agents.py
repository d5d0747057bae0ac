"""Rule-based agents and the documented subclassing example."""

import re
from pathlib import Path

from agents.rule_based import RuleBasedRecommender, RuleBasedUser, attribute_overlap
from interplay.agent import Agent
from interplay.episode import HistoryTurn, Observation, build_recommender_view, build_user_view
from interplay.protocol import Action, Role, Turn, check_turn, mark_title
from interplay.simulation_data import load_demo

DEMO = load_demo()
ROOT = Path(__file__).resolve().parent.parent


def obs(*turns):
    return Observation(history=[HistoryTurn(role=r, action=a, text=t) for r, a, t in turns], turn_index=len(turns))


def test_demo_set_is_consistent():
    assert len(DEMO.episodes) >= 12 and len(DEMO.catalogue) >= 30
    for spec in DEMO.episodes:
        item = DEMO.catalogue[spec.target.item_id]
        assert item.title == spec.target.title and list(item.attributes) == spec.target.attributes
        build_user_view("e", spec)  # raises on a leak
        assert spec.target.title not in {w.title for w in spec.persona.watched}


def test_attribute_overlap():
    item = DEMO.catalogue["demo:heat-1995"]
    assert attribute_overlap(item, ["Crime", "heist", "romance", "space travel"]) == 0.5
    assert attribute_overlap(item, []) == 0.0


def test_rule_user_discloses_then_accepts_only_fitting_items():
    spec = DEMO.episodes[0]  # target Inside Man: crime, thriller, heist, hostage, detective, new york
    user = RuleBasedUser(catalogue=DEMO.catalogue, seed=0)
    user.reset(build_user_view("e", spec))
    first = user.act(obs())
    assert first.action is Action.DISCLOSE_GOAL and "crime" in first.text
    # Heat covers crime, thriller, heist, detective = 4/6 >= 0.6 -> accepted (an early acceptance)
    heat = Turn(Action.RECOMMEND, f"Try {mark_title('Heat (1995)')}")
    assert user.act(obs((Role.RECOMMENDER, heat.action, heat.text))).action is Action.ACCEPT
    # Up shares nothing -> feedback that discloses the next attribute
    up = Turn(Action.RECOMMEND, f"Try {mark_title('Up (2009)')}")
    reply = user.act(obs((Role.RECOMMENDER, up.action, up.text)))
    assert reply.action is Action.FEEDBACK and "thriller" in reply.text
    # an unknown title is never accepted
    odd = Turn(Action.RECOMMEND, f"Try {mark_title('Nonexistent Film (1901)')}")
    assert user.act(obs((Role.RECOMMENDER, odd.action, odd.text))).action is Action.FEEDBACK
    for t in (first, reply):
        check_turn(t, Role.USER)
        assert spec.target.title not in t.text


def test_rule_user_scored_decision_is_its_coverage_and_matches_act():
    """``action_probabilities`` after a recommendation: P(accept) = the best recommended item's
    coverage of the target attributes; thresholded at the user's own threshold it is the action
    ``act`` takes, for every catalogue item of every demo episode. Elsewhere: act's action, P 1."""
    for spec in DEMO.episodes[:4]:
        user = RuleBasedUser(catalogue=DEMO.catalogue, seed=0)
        user.reset(build_user_view("e", spec))
        assert user.action_probabilities(obs()) == {"disclose-goal": 1.0}  # what act does, not done
        assert user.action_probabilities(obs()) == {"disclose-goal": 1.0}
        for item in DEMO.catalogue:
            o = obs((Role.RECOMMENDER, Action.RECOMMEND, f"Try {mark_title(item.title)}"))
            probs = user.action_probabilities(o)
            assert probs["accept"] == attribute_overlap(item, spec.target.attributes)
            assert probs["accept"] + probs["feedback"] == 1.0
            scored = Action.ACCEPT if probs["accept"] >= user.threshold else Action.FEEDBACK
            assert user.act(o).action is scored
        unknown = obs((Role.RECOMMENDER, Action.RECOMMEND, f"Try {mark_title('Nonexistent Film (1901)')}"))
        assert user.action_probabilities(unknown)["accept"] == 0.0
        asked = obs((Role.RECOMMENDER, Action.INQUIRE, f"Seen {mark_title(DEMO.catalogue[spec.target.item_id].title)}?"))
        assert user.action_probabilities(asked) == {user.act(asked).action.value: 1.0}


def test_rule_recommender_asks_then_recommends_matching_items():
    rec = RuleBasedRecommender(catalogue=DEMO.catalogue, seed=0)
    rec.reset(build_recommender_view("e", DEMO.episodes[0]))
    assert rec.act(obs()).action is Action.GREETING
    h = [(Role.USER, Action.DISCLOSE_GOAL, "I'm looking for a movie with science fiction.")]
    assert rec.act(obs(*h)).action is Action.INQUIRE
    h += [(Role.RECOMMENDER, Action.INQUIRE, "more?"), (Role.USER, Action.DISCLOSE_GOAL, "survival and space travel")]
    turn = rec.act(obs(*h))
    assert turn.action is Action.RECOMMEND
    item = DEMO.catalogue.find(turn.titles[0])
    assert {"science fiction", "survival", "space travel"} <= set(item.attributes)
    # never recommends the same title twice
    h += [(Role.RECOMMENDER, turn.action, turn.text), (Role.USER, Action.FEEDBACK, "not that one")]
    assert rec.act(obs(*h)).titles[0] != turn.titles[0]


def docs_example_source() -> str:
    text = (ROOT / "docs" / "agents.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_docs_agent_example_is_short_and_works():
    src = docs_example_source()
    assert len(src.strip().splitlines()) < 30
    ns: dict = {}
    exec(compile(src, "docs/agents.md", "exec"), ns)
    cls = ns["RandomRecommender"]
    assert issubclass(cls, Agent) and cls.role is Role.RECOMMENDER
    agent = cls(catalogue=DEMO.catalogue, seed=3)
    agent.reset(build_recommender_view("e", DEMO.episodes[0]))
    assert agent.act(obs()).action is Action.INQUIRE
    h = [(Role.RECOMMENDER, Action.INQUIRE, "?"), (Role.USER, Action.DISCLOSE_GOAL, "anything")]
    titles = [agent.act(obs(*h)).titles[0] for _ in range(5)]
    assert len(set(titles)) == 5 and all(DEMO.catalogue.find(t) for t in titles)
