"""Small runs played in this process (no Ray): model-free agents (``rule``, ``rule:T``, ``py:``) on
a data set, written as a run folder in the simulation's format. The studio's browser tests, its
load benchmark and the screenshots in ``docs/studio.md`` use them; real work uses
``interplay simulate``."""

from __future__ import annotations

from pathlib import Path

from environments.episode_core import EpisodeCore
from interplay.runtime.env_settings import env_config
from interplay.agent import Agent
from interplay.agent_specs import (
    AgentContext,
    build_agent,
    check_agent_spec,
    model_of,
)
from interplay.backends.base import GenerationParams
from interplay.episode import EpisodeSpec
from interplay.episode_log import EPISODES_FILE, SUMMARY_FILE, EpisodeLog, summarize
from interplay.protocol import Role
from interplay.run_folder import JsonlLog, write_json_atomic
from interplay.simulation_data import load_simulation_data


def play_local_run(out: str | Path, user: str = "rule", recommender: str = "rule", data: str = "demo",
                   episodes: int = 4, max_turns: int = 6, seed: int = 0, split: str = "test",
                   distinct_records: bool = False) -> list[EpisodeLog]:
    """Play ``episodes`` episodes between two model-free agents and write a run folder at ``out``
    (``config.json``, ``episodes.jsonl``, ``summary.json``). Episodes cycle over the data's specs;
    with ``distinct_records`` every episode gets its own record id (``<record>#<n>``), so that a
    study can pair many episodes of two such runs."""
    specs = {Role.USER: check_agent_spec(user, Role.USER), Role.RECOMMENDER: check_agent_spec(recommender, Role.RECOMMENDER)}
    for role, spec in specs.items():
        if model_of(spec) is not None:
            raise ValueError(f"{spec} needs a model; play_local_run takes model-free agents (use interplay simulate)")
    sim = load_simulation_data(data, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"kind": "simulation", "user": user, "recommender": recommender, "data": data, "split": split,
              "episodes": episodes, "max_turns": max_turns, "seed": seed, "played": "in-process"}
    write_json_atomic(out / "config.json", config)
    env_cfg = env_config(max_turns=max_turns, recommender=specs[Role.RECOMMENDER])
    logs: list[EpisodeLog] = []
    with JsonlLog(out / EPISODES_FILE) as log:
        for i in range(episodes):
            spec = sim.episodes[i % len(sim.episodes)]
            if distinct_records:
                spec = spec.model_copy(update={"record_id": f"{spec.record_id}#{i}"})
            agents = {role: build_agent(s, AgentContext(role=role, arg=s.arg, catalogue=sim.catalogue, seed=seed + i,
                                                        params=GenerationParams()))
                      for role, s in specs.items()}
            episode = play_episode(EpisodeCore(env_cfg), agents, f"{i:06d}-{spec.record_id}", spec, seed + i,
                                   user, recommender)
            log.append(episode.model_dump_json())
            logs.append(episode)
    summary = summarize(logs)
    summary["episodes_this_invocation"] = len(logs)
    write_json_atomic(out / SUMMARY_FILE, summary)
    return logs


def play_episode(core: EpisodeCore, agents: dict[Role, Agent], episode_id: str, spec: EpisodeSpec, seed: int,
                 user_spec: str = "", recommender_spec: str = "") -> EpisodeLog:
    """One episode between two in-process agents, synchronously (the loop of
    :meth:`RecommendationEnv.run <environments.recommendation_env.RecommendationEnv.run>`
    without the event loop, so it also runs where one is already running)."""
    try:
        views = core.reset(episode_id, spec, seed, user_spec, recommender_spec)
    except Exception as exc:  # the view would leak the target
        core.fail(exc)
        return core.log()
    for role, agent in agents.items():
        try:
            agent.reset(views[role])
        except Exception as exc:  # an agent failing at reset ends the episode, as in the environment
            core.fail(exc, role)
            return core.log()
    return core.play(agents)
