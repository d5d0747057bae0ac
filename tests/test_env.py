"""RecommendationEnv rules, with in-process scripted agents."""

import asyncio

import pytest

from environments.recommendation_env import EnvConfig, LocalAgentHandle, RecommendationEnv
from interplay.agent import RecommenderAgent, UserAgent
from interplay.episode import (
    EpisodeSpec,
    Persona,
    Target,
    TargetLeakError,
    UserView,
    build_user_view,
    find_target_leak,
)
from interplay.episode_log import Termination
from interplay.protocol import Action, ProtocolError, ProtocolErrorKind, Role, Turn, mark_title

SPEC = EpisodeSpec(
    record_id="r1",
    persona=Persona(summary="Likes tense crime films.", watched=[]),
    target=Target(item_id="demo:heat-1995", title="Heat (1995)", attributes=["crime", "heist"],
                  attribute_text="A crime film about a heist."),
)


class Scripted:
    """Mixin: returns the scripted turns (or raises the scripted exceptions) in order."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)
        self.seen = []

    def act(self, observation):
        self.seen.append(observation)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class ScriptedUser(Scripted, UserAgent):
    pass


class ScriptedRec(Scripted, RecommenderAgent):
    pass


def run(user, rec, **cfg):
    env = RecommendationEnv(LocalAgentHandle(user), LocalAgentHandle(rec), EnvConfig(**cfg))
    return asyncio.run(env.run("ep1", SPEC, seed=7, user_spec="u", recommender_spec="r"))


REC_HEAT = Turn(Action.RECOMMEND, f"Try {mark_title('Heat (1995)')}.")


def test_accept_ends_episode_with_accepted_item():
    user = ScriptedUser([Turn(Action.DISCLOSE_GOAL, "A heist film please."), Turn(Action.ACCEPT, "Great!")])
    rec = ScriptedRec([REC_HEAT])
    ep = run(user, rec)
    assert ep.termination is Termination.ACCEPTED
    assert ep.accepted_item == "Heat (1995)"
    assert [t.role for t in ep.turns] == [Role.USER, Role.RECOMMENDER, Role.USER]
    assert [t.action for t in ep.turns] == [Action.DISCLOSE_GOAL, Action.RECOMMEND, Action.ACCEPT]
    assert ep.turns[1].titles == ["Heat (1995)"] and ep.recommended_items == ["Heat (1995)"]
    assert ep.num_turns == 3 and ep.seed == 7 and ep.target.title == "Heat (1995)"
    # alternation: each agent saw the history up to its turn
    assert [len(o.history) for o in user.seen] == [0, 2] and [len(o.history) for o in rec.seen] == [1]


def test_max_turns_truncates():
    user = ScriptedUser([Turn(Action.FEEDBACK, "no")] * 5)
    rec = ScriptedRec([Turn(Action.INQUIRE, "what?")] * 5)
    ep = run(user, rec, max_turns=4)
    assert ep.termination is Termination.MAX_TURNS and ep.num_turns == 4 and ep.accepted_item is None


def test_recommender_can_speak_first():
    user = ScriptedUser([Turn(Action.ACCEPT, "yes")])
    rec = ScriptedRec([REC_HEAT])
    ep = run(user, rec, first_speaker=Role.RECOMMENDER)
    assert [t.role for t in ep.turns] == [Role.RECOMMENDER, Role.USER]
    assert ep.termination is Termination.ACCEPTED


def test_malformed_output_is_retried_then_accepted():
    bad = ProtocolError(ProtocolErrorKind.NO_ACTION, "no <action> block", "blah")
    user = ScriptedUser([bad, Turn(Action.DISCLOSE_GOAL, "crime")])
    rec = ScriptedRec([Turn(Action.INQUIRE, "more?")])
    ep = run(user, rec, max_turns=2, max_retries=2)
    assert ep.turns[0].action is Action.DISCLOSE_GOAL
    assert [a.raw for a in ep.turns[0].failed_attempts] == ["blah"]
    assert [o.attempt for o in user.seen] == [0, 1]


def test_protocol_error_after_retries():
    bad = ProtocolError(ProtocolErrorKind.NO_ACTION, "no <action> block", "blah")
    user = ScriptedUser([bad, bad, bad])
    ep = run(user, ScriptedRec([]), max_retries=2)
    assert ep.termination is Termination.PROTOCOL_ERROR
    assert ep.num_turns == 1 and ep.turns[0].action is None
    assert ep.turns[0].raw == "blah" and "no_action" in ep.turns[0].parse_error
    assert len(ep.turns[0].failed_attempts) == 2


@pytest.mark.parametrize(
    "user_script, rec_script",
    [
        ([Turn(Action.RECOMMEND, f"{mark_title('X (2000)')}")] * 3, []),  # user may not recommend
        ([Turn(Action.ACCEPT, "ok")] * 3, []),  # accept before any recommendation
        ([Turn(Action.DISCLOSE_GOAL, "hi")], [Turn(Action.RECOMMEND, "a film without a title tag")] * 3),
    ],
)
def test_protocol_violations_end_episode(user_script, rec_script):
    ep = run(ScriptedUser(user_script), ScriptedRec(rec_script), max_retries=2)
    assert ep.termination is Termination.PROTOCOL_ERROR


def test_agent_exception_is_logged_not_raised():
    user = ScriptedUser([Turn(Action.DISCLOSE_GOAL, "hi")])
    rec = ScriptedRec([RuntimeError("model server died")])
    ep = run(user, rec)
    assert ep.termination is Termination.AGENT_ERROR
    assert "model server died" in ep.error
    assert ep.num_turns == 2 and ep.turns[-1].action is None


def test_user_view_has_attributes_but_no_title_or_id():
    view = build_user_view("ep", SPEC)
    assert isinstance(view, UserView)
    assert set(UserView.model_fields) == {"episode_id", "persona", "target_attributes", "target_attribute_text"}
    dumped = view.model_dump_json()
    assert "Heat" not in dumped and "heat-1995" not in dumped
    assert view.target_attributes == ["crime", "heist"]


def test_leaking_spec_is_refused():
    leaky = SPEC.model_copy(update={"target": SPEC.target.model_copy(update={"attribute_text": "Like HEAT, but longer."})})
    with pytest.raises(TargetLeakError, match="target title"):
        build_user_view("ep", leaky)
    user = ScriptedUser([])
    env = RecommendationEnv(LocalAgentHandle(user), LocalAgentHandle(ScriptedRec([])))
    ep = asyncio.run(env.run("ep", leaky, seed=0))
    assert ep.termination is Termination.AGENT_ERROR and "target title" in ep.error and user.view is None


@pytest.mark.parametrize(
    "text, title, leaks",
    [
        ("a film like the matrix", "Matrix, The (1999)", True),
        ("set in a matrix of lies", "Matrix, The (1999)", True),  # whole-word title: flagged (conservative)
        ("thermal heat waves", "Heat (1995)", True),
        ("the heater is broken", "Heat (1995)", False),
        ("a story of survival in space", "The Martian (2015)", False),
        ("id demo:heat-1995 appears", "Other (2000)", True),
        ("a harry potter style adventure", "Harry Potter and the Goblet of Fire (2005)", True),  # franchise words
        ("wizards, magic school, tournament", "Harry Potter and the Goblet of Fire (2005)", False),
        ("star wars fans will love it", "Star Wars: Episode IV - A New Hope (1977)", True),
        ("a war among the stars", "Star Wars: Episode IV - A New Hope (1977)", False),
    ],
)
def test_find_target_leak(text, title, leaks):
    target = Target(item_id="demo:heat-1995", title=title)
    assert (find_target_leak(text, target) is not None) == leaks
