"""The steppable episode core: driving an episode by hand gives what ``run()`` gives; outcomes kept apart."""

import asyncio

import pytest

from agents.rule_based import RuleBasedRecommender, RuleBasedUser
from environments.episode_core import EpisodeCore, failure_kind
from environments.recommendation_env import EnvConfig, LocalAgentHandle, RecommendationEnv
from interplay.episode_log import EpisodeLog, EpisodeLogWriter, FailureKind, Outcome, Termination, summarize
from interplay.protocol import Action, ProtocolError, ProtocolErrorKind, Role, Turn, mark_title
from interplay.simulation_data import load_demo

DEMO = load_demo()


def comparable(ep: EpisodeLog) -> dict:
    """An episode log without its timings."""
    d = ep.model_dump(mode="json", exclude={"wall_s"})
    for t in d["turns"]:
        t.pop("latency_s")
    return d


def agents(seed: int):
    return (RuleBasedUser(catalogue=DEMO.catalogue, seed=seed),
            RuleBasedRecommender(catalogue=DEMO.catalogue, seed=seed))


@pytest.mark.parametrize("index", range(6))
def test_stepping_by_hand_gives_the_log_of_run(index):
    spec, seed = DEMO.episodes[index], 100 + index
    cfg = EnvConfig(max_turns=8, grounding=DEMO.catalogue)
    user, rec = agents(seed)
    by_run = asyncio.run(RecommendationEnv(LocalAgentHandle(user), LocalAgentHandle(rec), cfg)
                         .run(f"e{index}", spec, seed, "rule", "rule"))

    def started() -> tuple[EpisodeCore, dict]:
        user, rec = agents(seed)
        core = EpisodeCore(cfg)
        views = core.reset(f"e{index}", spec, seed, "rule", "rule")
        user.reset(views[Role.USER])
        rec.reset(views[Role.RECOMMENDER])
        return core, {Role.USER: user, Role.RECOMMENDER: rec}

    played, by_agent = started()
    assert comparable(played.play(by_agent)) == comparable(by_run)  # the loop helper gives the same
    core, by_agent = started()
    steps = []
    while not core.done:
        obs = core.observation()
        assert obs.allowed_actions == core.legal_actions()  # the agent is told what it may do
        steps.append(core.step(by_agent[core.next_role].act(obs)))
    by_hand = core.log()

    assert comparable(by_hand) == comparable(by_run)
    assert by_hand.num_turns == len(steps) and steps[-1].done and not any(s.done for s in steps[:-1])
    assert steps[-1].terminated == (by_hand.outcome is Outcome.TERMINATED)
    assert steps[-1].truncated == (by_hand.outcome is Outcome.TRUNCATED)
    assert core.next_role is None


def test_allowed_actions_follow_the_protocol():
    core = EpisodeCore(EnvConfig(max_turns=4))
    core.reset("e", DEMO.episodes[0], 0)
    assert core.next_role is Role.USER and Action.ACCEPT not in core.observation().allowed_actions
    core.step(Turn(Action.DISCLOSE_GOAL, "A heist film please."))
    assert core.next_role is Role.RECOMMENDER and Action.RECOMMEND in core.observation().allowed_actions
    core.step(Turn(Action.RECOMMEND, f"Try {mark_title('Heat (1995)')}."))
    assert Action.ACCEPT in core.observation().allowed_actions  # now that something was recommended
    result = core.step(Turn(Action.ACCEPT, "Great!"))
    assert result.terminated and result.failed is None and core.log().accepted_item == "Heat (1995)"
    with pytest.raises(RuntimeError, match="over"):
        core.step(Turn(Action.ACCEPT, "again"))


@pytest.mark.parametrize("accepting, accepted", [
    ("Great!", "demo:ronin-1998"),  # no title: the last one recommended
    (f"I'll watch {mark_title('heat')}!", "demo:heat-1995"),  # recommended, spelled another way
    (f"Not that, but {mark_title('The Matrix (1999)')} sounds good.", "demo:ronin-1998"),  # never recommended
    (f"{mark_title('The Matrix (1999)')} or {mark_title('Heat')}: Heat it is.", "demo:heat-1995"),
])
def test_the_accepted_item_is_one_on_the_table(accepting, accepted):
    """A title the accepting user names counts only if it names an item recommended in the episode
    (compared by catalogue id): a title never recommended is not what was accepted."""
    core = EpisodeCore(EnvConfig(max_turns=8, catalogue=DEMO.catalogue))
    core.reset("e", DEMO.episodes[0], 0)
    core.step(Turn(Action.DISCLOSE_GOAL, "A heist film please."))
    core.step(Turn(Action.RECOMMEND, f"Try {mark_title('Heat (1995)')}."))
    core.step(Turn(Action.FEEDBACK, "Seen it."))
    core.step(Turn(Action.RECOMMEND, f"Then {mark_title('Ronin (1998)')}."))
    core.step(Turn(Action.ACCEPT, accepting))
    assert core.log().accepted_item_id == accepted


def test_retry_then_protocol_failure():
    core = EpisodeCore(EnvConfig(max_retries=1))
    core.reset("e", DEMO.episodes[0], 0)
    bad = ProtocolError(ProtocolErrorKind.NO_ACTION, "no <action> block", "blah")
    first = core.step(bad)
    assert first.retry and not first.done and core.observation().attempt == 1 and core.next_role is Role.USER
    last = core.step(Turn(Action.ACCEPT, "yes"))  # accept before any recommendation: not allowed
    assert last.failed is FailureKind.PROTOCOL and last.turn.action is None
    log = core.log()
    assert log.termination is Termination.PROTOCOL_ERROR and log.outcome is Outcome.FAILED
    assert log.failure is FailureKind.PROTOCOL and [a.raw for a in log.turns[0].failed_attempts] == ["blah"]


class ActorDiedError(RuntimeError):
    """Stands in for ray.exceptions.ActorDiedError by name (the classification is by class name)."""


def test_failure_kinds_are_told_apart_and_only_infrastructure_is_rerun(tmp_path):
    import ray.exceptions

    assert failure_kind(ValueError("bug")) is FailureKind.AGENT
    assert failure_kind(ConnectionRefusedError("server down")) is FailureKind.INFRASTRUCTURE
    assert failure_kind(ray.exceptions.ActorDiedError()) is FailureKind.INFRASTRUCTURE
    wrapped = RuntimeError("in the actor")
    wrapped.__cause__ = TimeoutError("no answer")
    assert failure_kind(wrapped) is FailureKind.INFRASTRUCTURE
    # a Ray task error whose cause could not be pickled: told from its traceback's last line
    lost = ray.exceptions.RayTaskError("act", "Traceback ...\nopenai.APIConnectionError: Connection error.", None)
    assert failure_kind(lost) is FailureKind.INFRASTRUCTURE
    assert failure_kind(ray.exceptions.RayTaskError("act", "Traceback ...\nValueError: bug", None)) is FailureKind.AGENT
    unpicklable = ray.exceptions.UnserializableException("Traceback ...\nopenai.APITimeoutError: Request timed out.")
    assert failure_kind(unpicklable) is FailureKind.INFRASTRUCTURE

    logs = []
    for i, exc in enumerate([ValueError("agent bug"), ActorDiedError("model server gone"), None]):
        core = EpisodeCore(EnvConfig(max_turns=2))
        core.reset(f"e{i}", DEMO.episodes[i], i)
        core.step(Turn(Action.DISCLOSE_GOAL, "A heist film please."))
        core.step(exc if exc is not None else Turn(Action.INQUIRE, "Any actor you like?"))
        logs.append(core.log())
    assert [e.outcome for e in logs] == [Outcome.FAILED, Outcome.FAILED, Outcome.TRUNCATED]
    assert [e.failure for e in logs] == [FailureKind.AGENT, FailureKind.INFRASTRUCTURE, None]
    s = summarize(logs)
    assert s["outcome"] == {"terminated": 0, "truncated": 1, "failed": 2}
    assert s["failure"] == {"protocol": 0, "agent": 1, "infrastructure": 1}
    with EpisodeLogWriter(tmp_path) as w:
        for e in logs:
            w.write(e)
        assert w.existing_ids() == {"e0", "e2"}  # resume re-runs the infrastructure failure only
        assert w.existing_ids(rerun_failed=True) == {"e2"}
    line = (tmp_path / "episodes.jsonl").read_text().splitlines()[1]
    assert '"outcome":"failed"' in line and '"failure":"infrastructure"' in line
    assert EpisodeLog.model_validate_json(line) == logs[1]  # the derived field reads back


def test_legacy_agent_error_without_a_kind_is_rerun(tmp_path):
    core = EpisodeCore(EnvConfig())
    core.reset("old", DEMO.episodes[0], 0)
    core.step(RuntimeError("?"))
    legacy = core.log().model_copy(update={"failure": None})
    assert legacy.rerunnable
    with EpisodeLogWriter(tmp_path) as w:
        w.write(legacy)
        assert w.existing_ids() == set()


def test_reading_next_role_and_observation_changes_nothing():
    core = EpisodeCore(EnvConfig(max_turns=6))
    core.reset("e", DEMO.episodes[0], 0)
    started = core._turn.started
    looks = [(core.next_role, core.observation()) for _ in range(3)]
    assert all(look == looks[0] for look in looks) and core._turn.started == started
    assert core.turns == [] and core.log().num_turns == 0


def test_check_is_a_dry_run_of_step():
    core = EpisodeCore(EnvConfig(max_turns=6))
    core.reset("e", DEMO.episodes[0], 0)
    early_accept = Turn(Action.ACCEPT, "yes")  # before any recommendation: not allowed
    error = core.check(early_accept)
    assert isinstance(error, ProtocolError) and error.kind is ProtocolErrorKind.ROLE_ACTION
    assert core.observation().attempt == 0 and core._turn.failed == []  # nothing recorded
    legal = Turn(Action.DISCLOSE_GOAL, "I want a tense heist film.")
    assert core.check(legal) is None and core.turns == []
    assert core.step(early_accept).retry  # step agrees with check
    assert core.check(legal) is None and not core.step(legal).retry


class _FailingReset(RuleBasedRecommender):
    def reset(self, view):
        raise RuntimeError("no model here")


class _FailingAct(RuleBasedUser):
    def act(self, observation):
        raise RuntimeError("lost")


def test_the_log_says_whose_failure_it_was():
    from interplay.studio.sample_runs import play_episode

    spec = DEMO.episodes[0]
    log = play_episode(EpisodeCore(EnvConfig(max_turns=6)),
                       {Role.USER: RuleBasedUser(catalogue=DEMO.catalogue, seed=0),
                        Role.RECOMMENDER: _FailingReset(catalogue=DEMO.catalogue, seed=0)}, "r", spec, 0)
    assert log.termination is Termination.AGENT_ERROR and log.failed_role is Role.RECOMMENDER and log.num_turns == 0
    core = EpisodeCore(EnvConfig(max_turns=6))
    views = core.reset("a", spec, 0)
    user, rec = _FailingAct(catalogue=DEMO.catalogue, seed=0), RuleBasedRecommender(catalogue=DEMO.catalogue, seed=0)
    user.reset(views[Role.USER])
    rec.reset(views[Role.RECOMMENDER])
    log = core.play({Role.USER: user, Role.RECOMMENDER: rec})
    assert log.failure is FailureKind.AGENT and log.failed_role is Role.USER
    ok = EpisodeCore(EnvConfig(max_turns=4))
    views = ok.reset("b", spec, 0)
    user, rec = agents(0)
    user.reset(views[Role.USER])
    rec.reset(views[Role.RECOMMENDER])
    assert ok.play({Role.USER: user, Role.RECOMMENDER: rec}).failed_role is None
