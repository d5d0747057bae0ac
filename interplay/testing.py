"""Agent conformance checker: run it on a new agent before putting it in a simulation.

In the spirit of PettingZoo's ``api_test``::

    from interplay.testing import check_agent
    report = check_agent(lambda seed: MyRecommender(catalogue=data.catalogue, seed=seed))
    report.raise_for_failures()      # or: assert report.ok, report.summary()

It plays a few episodes against a rule agent of the other role through the steppable episode core
(:class:`~environments.episode_core.EpisodeCore`) and checks:

- ``role``: the agent is an :class:`~interplay.agent.Agent` and says which role it plays;
- ``view_typing``: ``reset`` refuses the other role's view (a user must never get a recommender's
  view, nor the reverse);
- ``allowed_actions``: every turn's action is one the observation allows, also when the caller
  narrows a turn to a single action (the recommender evaluation forces ``recommend`` that way);
  titles of ``recommend`` turns are catalogue items when the agent has a catalogue;
- ``picklable``: what Ray moves between processes travels: the agent class is importable by its
  module path (a ``py:module:Class`` spec builds it inside the agent-host actor) and every turn it
  returns survives a cloudpickle round trip unchanged (``meta`` included);
- ``seeded``: two agents built with the same seed answer the same observations identically.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field

from environments.episode_core import EnvConfig, EpisodeCore
from interplay.agent import Agent
from interplay.catalogue import Catalogue
from interplay.episode import EpisodeSpec, Observation, RecommenderView, UserView
from interplay.protocol import ProtocolError, Role, Turn

CHECKS = ("role", "view_typing", "allowed_actions", "picklable", "seeded")


class AgentConformanceError(AssertionError):
    """An agent failed the conformance checks; the message lists each failure."""


@dataclass
class ConformanceReport:
    """Each check's result: ``None`` when it passed, else what went wrong."""

    agent: str
    results: dict[str, str | None] = field(default_factory=dict)
    turns_checked: int = 0

    @property
    def ok(self) -> bool:
        return all(v is None for v in self.results.values())

    def summary(self) -> str:
        lines = [f"{self.agent}: {'conforms' if self.ok else 'does not conform'} ({self.turns_checked} turns checked)"]
        lines += [f"  {name}: {'ok' if why is None else 'FAILED: ' + why}" for name, why in self.results.items()]
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.ok:
            raise AgentConformanceError(self.summary())


def _dumps(obj: object) -> bytes:
    try:
        from ray import cloudpickle
    except ImportError:  # pragma: no cover - ray is a dependency
        return pickle.dumps(obj)
    return cloudpickle.dumps(obj)


def _same(a: Turn | Exception, b: Turn | Exception) -> bool:
    if isinstance(a, Turn) and isinstance(b, Turn):
        return (a.action, a.text) == (b.action, b.text)
    return type(a) is type(b) and str(a) == str(b)


def _answer(agent: Agent, obs: Observation) -> Turn | Exception:
    try:
        return agent.act(obs)
    except Exception as exc:  # reported by the checks, never raised
        return exc


def check_agent(make: Callable[[int], Agent], specs: list[EpisodeSpec] | None = None,
                catalogue: Catalogue | None = None, episodes: int = 3, max_turns: int = 6,
                seed: int = 0) -> ConformanceReport:
    """Check the agent that ``make(seed)`` builds (a fresh one per call) against the Agent API.

    ``specs``/``catalogue``: the episodes to play and the catalogue of the counterpart rule agent
    (default: the embedded demo set). Returns a :class:`ConformanceReport`; nothing is raised for
    a failing check (call :meth:`ConformanceReport.raise_for_failures`).
    """
    from agents.rule_based import RuleBasedRecommender, RuleBasedUser
    from interplay.simulation_data import load_demo

    if specs is None or catalogue is None:
        demo = load_demo()
        specs, catalogue = specs or demo.episodes, catalogue or demo.catalogue
    agent = make(seed)
    report = ConformanceReport(agent=type(agent).__qualname__)
    res = report.results

    role = getattr(agent, "role", None)
    if not isinstance(agent, Agent):
        res["role"] = f"{type(agent).__name__} is not an interplay.agent.Agent"
    elif not isinstance(role, Role):
        res["role"] = f"role is {role!r}, not a Role"
    else:
        res["role"] = None
    if res["role"] is not None:
        for name in CHECKS[1:]:
            res[name] = "not checked: the role check failed"
        return report

    wrong = (RecommenderView(episode_id="conformance") if role is Role.USER else
             UserView(episode_id="conformance", persona=specs[0].persona, target_attributes=[],
                      target_attribute_text=""))
    try:
        make(seed).reset(wrong)
        res["view_typing"] = f"reset accepted a {type(wrong).__name__}"
    except TypeError:
        res["view_typing"] = None
    except Exception as exc:  # refused, but not as documented
        res["view_typing"] = f"reset raised {type(exc).__name__} (expected TypeError) for a {type(wrong).__name__}"

    # play episodes; record what the agent was shown and said, checking each turn
    counterpart_cls = RuleBasedRecommender if role is Role.USER else RuleBasedUser
    problems: list[str] = []
    played: list[tuple[Observation, Turn | Exception]] = []
    first_view: UserView | RecommenderView | None = None
    cfg = EnvConfig(max_turns=max_turns, max_retries=0)
    for i, spec in enumerate(specs[:episodes]):
        core = EpisodeCore(cfg)
        views = core.reset(f"conformance-{i}", spec, seed)
        mine, other = make(seed), counterpart_cls(catalogue=catalogue, seed=seed)
        mine.reset(views[role])
        other.reset(views[role.other])
        first_view = first_view or views[role]
        while not core.done:
            obs = core.observation()
            if core.next_role is not role:
                core.step(_answer(other, obs))
                continue
            out = _answer(mine, obs)
            if i == 0:
                played.append((obs, out))
            problems += _turn_problems(out, obs, role, mine.catalogue)
            for action in sorted(obs.allowed_actions, key=lambda a: a.value):  # the caller narrows
                narrowed = obs.model_copy(update={"allowed_actions": frozenset({action})})
                forced = _answer(_fresh(make, seed, views[role]), narrowed)
                problems += _turn_problems(forced, narrowed, role, mine.catalogue)
            report.turns_checked += 1
            core.step(out)
    res["allowed_actions"] = "; ".join(dict.fromkeys(problems)) or None
    if report.turns_checked == 0:
        res["allowed_actions"] = "the agent never had a turn"

    res["picklable"] = _transport_problem(type(agent), [out for _, out in played])

    again = _fresh(make, seed, first_view)
    differs = [i for i, (obs, out) in enumerate(played) if not _same(_answer(again, obs), out)]
    res["seeded"] = f"turn {differs[0]} differs between two agents with seed {seed}" if differs else None
    return report


def _transport_problem(cls: type, outputs: list[Turn | Exception]) -> str | None:
    import importlib

    try:
        found = importlib.import_module(cls.__module__)
        for part in cls.__qualname__.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        found = None
    if found is not cls:
        return f"{cls.__module__}:{cls.__qualname__} cannot be imported by that path (a py: spec could not build it)"
    for i, out in enumerate(outputs):
        if not isinstance(out, Turn):
            continue
        try:
            back = pickle.loads(_dumps(out))
        except Exception as exc:
            return f"turn {i} does not pickle: {type(exc).__name__}: {exc}"
        if (back.action, back.text, back.meta) != (out.action, out.text, out.meta):
            return f"turn {i} changes in a pickle round trip"
    return None


def _fresh(make: Callable[[int], Agent], seed: int, view: UserView | RecommenderView | None) -> Agent:
    agent = make(seed)
    if view is not None:
        agent.reset(view)
    return agent


def _turn_problems(out: Turn | Exception, obs: Observation, role: Role, catalogue: Catalogue | None) -> list[str]:
    allowed = sorted(a.value for a in obs.legal_actions(role))
    if isinstance(out, ProtocolError):
        return [f"turn {obs.turn_index} (allowed {allowed}): unparseable output ({out})"]
    if isinstance(out, Exception):
        return [f"turn {obs.turn_index} (allowed {allowed}): act raised {type(out).__name__}: {out}"]
    if not isinstance(out, Turn):
        return [f"turn {obs.turn_index}: act returned {type(out).__name__}, not a Turn"]
    if out.action not in obs.legal_actions(role):
        return [f"turn {obs.turn_index}: {out.action.value} where only {allowed} are allowed"]
    if catalogue is not None and len(catalogue) > 0:
        unknown = [t for t in out.titles if catalogue.resolve(t) is None]
        if unknown:
            return [f"turn {obs.turn_index}: titles not in the catalogue: {unknown[:3]}"]
    return []
