"""Talk to a simulator (interplay.studio.talk): a person plays one role against a real agent on the
real episode core; finished episodes land in a run folder that the project's readers read."""

from __future__ import annotations

import json
import threading

import pytest

from interplay.episode import find_target_leak
from interplay.episode_log import EPISODES_FILE, SUMMARY_FILE, Termination, latest_episodes, read_episodes
from interplay.protocol import Action, Role
from interplay.simulation_data import load_demo
from interplay.studio.talk import (
    HUMAN_SPEC,
    AgentFactory,
    SessionNotFound,
    TalkRegistry,
    TalkSession,
    TurnRejected,
    compose_text,
    search_titles,
    talk_run_dir,
)

DEMO = load_demo()
FIRST = DEMO.episodes[0]  # demo-u01: the target is Inside Man (2006), a crime / heist / hostage film


def history(view: dict) -> list[tuple[str, str | None]]:
    return [(t["role"], t["action"]) for t in view["history"]]


def test_person_as_user_talks_rule_recommender_to_an_acceptance_that_is_logged(tmp_path):
    run = tmp_path / "talk"
    session = TalkSession.start(run, Role.USER, "rule")
    view = session.view()
    assert view["role"] == "user" and view["agent_role"] == "recommender" and view["your_turn"]
    assert view["history"] == [] and view["turns_left"] == 10 and not view["done"]
    assert view["target_attributes"] == FIRST.target.attributes
    assert view["persona"]["summary"] == FIRST.persona.summary
    assert "accept" not in view["allowed_actions"] and "disclose-goal" in view["allowed_actions"]

    view = session.say("disclose-goal", "Hi! I'm after a crime film.")
    assert history(view) == [("user", "disclose-goal"), ("recommender", "inquire")]  # one attribute: it asks
    view = session.say("disclose-goal", "A thriller with a heist and a hostage, please.")
    assert history(view)[-1] == ("recommender", "recommend")
    assert view["recommended_items"] == ["Inside Man (2006)"] and "accept" in view["allowed_actions"]
    assert view["history"][-1]["about"][0]["title"] == "Inside Man (2006)"  # the grounded user sees its facts
    assert not (run / EPISODES_FILE).exists()  # unfinished sessions are not logged

    view = session.say("accept", "Great, I'll watch it!")
    assert view["done"] and view["termination"] == "accepted" and view["outcome"] == "terminated"
    assert view["accepted_item"] == "Inside Man (2006)" and view["logged"] and view["allowed_actions"] == []

    [ep] = list(read_episodes(run / EPISODES_FILE))
    assert ep.termination is Termination.ACCEPTED and ep.accepted_item == FIRST.target.title
    assert (ep.user_spec, ep.recommender_spec) == (HUMAN_SPEC, "rule") and ep.record_id == FIRST.record_id
    assert ep.episode_id.startswith("talk-") and ep.num_turns == 5
    assert [t.meta.get("human", False) for t in ep.turns] == [True, False, True, False, True]
    assert all(not t.failed_attempts for t in ep.turns)
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "talk" and config["user"] == HUMAN_SPEC and config["recommender"] == "rule"
    assert (config["human_role"], config["agent"], config["data"], config["max_turns"]) == ("user", "rule", "demo", 10)
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["episodes"] == summary["planned"] == 1 and summary["termination"]["accepted"] == 1

    # the CLI's transcript reader and the run metrics read the folder like any simulated run
    from typer.testing import CliRunner

    from interplay.cli import app
    from interplay.metrics.registry import episode_values, run_values

    shown = CliRunner().invoke(app, ["show", str(run)])
    assert shown.exit_code == 0 and "accepted: Inside Man (2006)" in shown.output, shown.output
    rows = [episode_values(ep)]
    assert rows[0] and run_values([ep], rows)


def test_person_as_recommender_gets_only_the_conversation_and_the_rule_user_accepts_the_target(tmp_path):
    session = TalkSession.start(tmp_path / "run", "recommender", "rule")
    view = session.view()
    assert view["persona"] is None and view["target_attributes"] is None and view["target_attribute_text"] is None
    assert history(view) == [("user", "disclose-goal")]  # the rule user opened, disclosing one attribute
    assert view["allowed_actions"] == ["recommend", "inquire", "greeting", "feedback"]
    text = json.dumps(view)
    assert FIRST.persona.summary not in text and "hostage" not in text  # neither persona nor undisclosed wishes

    with pytest.raises(TurnRejected, match="may not accept"):
        session.say("accept", "Deal.")
    with pytest.raises(TurnRejected, match="without a <movie_title>"):
        session.say("recommend", "You will like this one.")
    with pytest.raises(TurnRejected, match="not in the catalogue"):
        session.say("recommend", "Try this:", ["No Such Film (1901)"])
    assert len(session.view()["history"]) == 1 and session.your_turn

    view = session.say("recommend", "How about inside man? It's tense.", ["Inside Man (2006)"])
    assert view["done"] and view["termination"] == "accepted" and view["accepted_item"] == "Inside Man (2006)"
    [ep] = list(read_episodes(tmp_path / "run" / EPISODES_FILE))
    assert (ep.user_spec, ep.recommender_spec) == ("rule", HUMAN_SPEC)
    assert ep.turns[1].text == "How about <movie_title>Inside Man (2006)</movie_title>? It's tense."  # marked in place
    assert ep.recommended_items == ["Inside Man (2006)"] and not ep.turns[1].failed_attempts


def test_rejected_turns_never_use_up_the_retries_and_the_episode_goes_on(tmp_path):
    session = TalkSession.start(tmp_path / "run", Role.USER, "rule")
    attempts = [("accept", "Yes, that one.", "before any recommendation"),
                ("recommend", "Watch this:", "may not recommend"),
                ("shout", "HELLO", "unknown action"),
                ("feedback", "   ", "empty turn"),
                ("feedback", "<response>broken</response>", "nested_tag")]
    for _ in range(3):  # more rejections than the core's max_retries (2) for an agent
        for action, text, reason in attempts:
            with pytest.raises(TurnRejected, match=reason):
                session.say(action, text)
    view = session.view()
    assert not view["done"] and view["your_turn"] and view["history"] == []
    view = session.say("greeting", "Hello there!")
    assert history(view) == [("user", "greeting"), ("recommender", "inquire")] and not view["done"]
    assert session.log().turns[0].failed_attempts == []
    assert isinstance(TurnRejected("x"), ValueError)


def test_the_user_view_never_contains_the_target_title_or_id(tmp_path):
    for i, spec in enumerate(DEMO.episodes):
        session = TalkSession.start(tmp_path / "run", Role.USER, "rule", record_id=spec.record_id)
        views = [session.view()]
        views.append(session.say("feedback", "I'm not sure yet."))  # the rule recommender asks; names nothing
        assert views[-1]["history"][-1]["action"] == "inquire"
        for view in views:
            text = json.dumps(view)
            assert spec.target.title not in text and spec.target.item_id not in text, spec.record_id
            assert find_target_leak(text, spec.target) is None, spec.record_id
            assert view["target_attributes"] == spec.target.attributes
    assert i == len(DEMO.episodes) - 1


def test_search_titles_by_substring_misspelling_and_alphabet():
    found = search_titles(DEMO.catalogue, "inside")
    assert found[0] == {"title": "Inside Man (2006)", "year": 2006,
                        "attributes": list(DEMO.catalogue.find("Inside Man (2006)").attributes)}
    assert search_titles(DEMO.catalogue, "MATRIX")[0]["title"] == "The Matrix (1999)"
    assert search_titles(DEMO.catalogue, "incepton")[0]["title"] == "Inception (2010)"
    assert search_titles(DEMO.catalogue, "blade runer")[0]["title"] == "Blade Runner (1982)"
    assert search_titles(DEMO.catalogue, "fellowship ring")[0]["title"].startswith("The Lord of the Rings")
    first = [r["title"] for r in search_titles(DEMO.catalogue, "", limit=5)]
    assert first == sorted(DEMO.catalogue.titles(), key=str.casefold)[:5]
    assert len(search_titles(DEMO.catalogue, "the", limit=3)) == 3 and search_titles(DEMO.catalogue, "x", 0) == []
    assert search_titles(DEMO.catalogue, "zzqqxx") == []


def test_compose_text_marks_chosen_titles_in_place_or_appends_them():
    assert compose_text("You may enjoy", ["Heat (1995)"]) == "You may enjoy <movie_title>Heat (1995)</movie_title>"
    assert compose_text("heat (1995) is great", ["Heat (1995)"]) == "<movie_title>Heat (1995)</movie_title> is great"
    assert compose_text("Try Heat or Se7en.", ["Heat (1995)", "Se7en (1995)"]) == \
        "Try <movie_title>Heat (1995)</movie_title> or <movie_title>Se7en (1995)</movie_title>."
    assert compose_text("", ["Heat (1995)", "Alien (1979)"]) == \
        "<movie_title>Heat (1995)</movie_title>, <movie_title>Alien (1979)</movie_title>"
    assert compose_text("Overheated? Try", ["Heat (1995)"]).endswith("Try <movie_title>Heat (1995)</movie_title>")


def test_the_turn_cap_ends_the_episode_as_max_turns(tmp_path):
    session = TalkSession.start(tmp_path / "run", Role.USER, "rule", max_turns=3)
    session.say("greeting", "Hi!")
    view = session.say("feedback", "I like crime films.")
    assert view["done"] and view["termination"] == "max_turns" and view["outcome"] == "truncated"
    assert view["turns_taken"] == 3 and view["turns_left"] == 0 and view["logged"]
    with pytest.raises(TurnRejected, match="over"):
        session.say("feedback", "Hello?")
    # a one-turn cap as the recommender: the rule user's opening ends it before the person speaks
    short = TalkSession.start(tmp_path / "run2", Role.RECOMMENDER, "rule", max_turns=1)
    assert short.done and short.view()["termination"] == "max_turns"
    eps = {d: list(read_episodes(tmp_path / d / EPISODES_FILE)) for d in ("run", "run2")}
    assert [e.num_turns for e in eps["run"]] == [3] and [e.num_turns for e in eps["run2"]] == [1]
    assert all(e.termination is Termination.MAX_TURNS for es in eps.values() for e in es)


@pytest.mark.parametrize("kwargs, message", [
    ({"agent_spec": "nosuch"}, "unknown agent kind 'nosuch'"),
    ({"agent_spec": "rule:0.5"}, "the rule recommender takes no argument"),
    ({"agent_spec": "py:recording_agents:NoSuchClass"}, "is not an interplay Agent subclass"),
    ({"agent_spec": "recsim:/no/such/checkpoint"}, "no such folder"),
    ({"record_id": "demo-u99"}, "unknown record id 'demo-u99'"),
    ({"human_role": "judge"}, "human role must be 'user' or 'recommender'"),
    ({"max_turns": 0}, "max_turns must be at least 1"),
    ({"data": "/no/such/data"}, "no such data folder"),
])
def test_a_bad_start_is_one_clear_value_error_and_writes_nothing(tmp_path, kwargs, message):
    args = {"human_role": Role.USER, "agent_spec": "rule", **kwargs}
    with pytest.raises(ValueError) as info:
        TalkSession.start(tmp_path / "run", args.pop("human_role"), args.pop("agent_spec"), **args)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_holds_talks_of_one_setting_only(tmp_path):
    TalkSession.start(tmp_path / "talks", Role.USER, "rule")
    with pytest.raises(ValueError, match="other settings .*agent.* differ"):
        TalkSession.start(tmp_path / "talks", Role.RECOMMENDER, "rule:0.8")
    with pytest.raises(ValueError, match=r"other settings \(max_turns differ\)"):
        TalkSession.start(tmp_path / "talks", Role.USER, "rule", max_turns=4)
    settings = [("user", "rule", 4), ("user", "rule", 10), ("recommender", "rule", 10), ("recommender", "rule:0.8", 10)]
    folders = [talk_run_dir(tmp_path / "by-setting", role, spec, "demo", turns) for role, spec, turns in settings]
    assert len(set(folders)) == len(settings) and folders[0].name == "user-vs-rule-demo-4t"
    assert talk_run_dir(tmp_path, "user", "llm:/m/x", "/d/redial", 8).name == "user-vs-llm-m-x-redial-8t"
    for folder, (role, spec, turns) in zip(folders, settings):  # each setting in its own folder: all start
        assert TalkSession.start(folder, role, spec, max_turns=turns).your_turn
    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "config.json").write_text(json.dumps({"user": "rule", "recommender": "rule", "data": "demo"}))
    with pytest.raises(ValueError, match="another kind of run"):
        TalkSession.start(sim, Role.USER, "rule")


def test_sessions_in_threads_append_to_one_run_folder_through_the_registry(tmp_path):
    registry = TalkRegistry(max_sessions=8)
    run = tmp_path / "shared"
    errors: list[BaseException] = []

    def talk(seed: int) -> None:
        try:
            session = registry.start(run, Role.RECOMMENDER, "rule", seed=seed)
            target = DEMO.episodes[seed % len(DEMO.episodes)].target.title
            assert registry.get(session.session_id) is session
            assert registry[session.session_id].say("recommend", "Here:", [target])["termination"] == "accepted"
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    episodes = latest_episodes(run / EPISODES_FILE)
    assert len(episodes) == 6 and len({e.episode_id for e in episodes}) == 6
    assert sorted(e.record_id for e in episodes) == sorted(s.record_id for s in DEMO.episodes[:6])
    assert json.loads((run / SUMMARY_FILE).read_text())["termination"]["accepted"] == 6


def test_the_registry_drops_the_oldest_finished_session_first_then_the_longest_idle(tmp_path):
    registry = TalkRegistry(max_sessions=2)
    finished = registry.start(tmp_path / "run", Role.RECOMMENDER, "rule", max_turns=1)  # over at once
    live = registry.start(tmp_path / "run2", Role.USER, "rule")
    assert finished.done and not live.done and len(finished.session_id) >= 20
    assert registry.get(live.session_id) is live and finished.session_id != live.session_id
    newer = TalkSession.start(tmp_path / "run2", Role.USER, "rule", seed=1)
    registry.add(newer)  # full: the finished session goes, though the live one is older
    assert len(registry) == 2 and finished.session_id not in registry and live.session_id in registry
    live.say("greeting", "Hi!")  # now the live one was active last, so the newer (idle) one goes next
    third = registry.start(tmp_path / "run2", Role.USER, "rule", seed=2)
    assert newer.session_id not in registry and live.session_id in registry and third.session_id in registry
    assert registry.get(finished.session_id) is None
    with pytest.raises(SessionNotFound, match="no talk session"):
        registry[finished.session_id]
    registry.remove(third.session_id)
    assert third.session_id not in registry and len(registry) == 1


def test_an_llm_agent_runs_in_process_with_a_shared_backend(tmp_path, tiny_model_dir):
    from interplay.agent_specs import AgentSpec
    from interplay.backends.base import GenerationParams

    factory = AgentFactory(GenerationParams(max_new_tokens=32), dtype="float32")
    spec = f"llm:{tiny_model_dir}"
    session = TalkSession.start(tmp_path / "run", Role.USER, spec, max_turns=4, agents=factory)
    view = session.say("disclose-goal", "A crime thriller with a heist, please.")
    assert view["history"][1]["role"] == "recommender" and view["history"][1]["action"] is not None
    if not view["done"]:
        action = Action.ACCEPT.value if "accept" in view["allowed_actions"] else Action.FEEDBACK.value
        view = session.say(action, "Hmm.")
    assert view["done"] and view["logged"]
    [ep] = list(read_episodes(tmp_path / "run" / EPISODES_FILE))
    agent_turns = [t for t in ep.turns if t.role is Role.RECOMMENDER]
    assert agent_turns and all(t.action is not None and t.meta["decoding"] == "constrained" for t in agent_turns)
    assert (ep.user_spec, ep.recommender_spec) == (HUMAN_SPEC, spec) and ep.num_turns <= 4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["generation"]["max_new_tokens"] == 32
    parsed = AgentSpec.parse(spec)
    assert factory.backend(parsed)[0] is factory.backend(parsed)[0]  # one backend per model, shared
    with pytest.raises(ValueError, match="a user simulator checkpoint cannot play the recommender"):
        TalkSession.start(tmp_path / "run3", Role.USER, f"usersim:{tiny_model_dir}", agents=factory)
