"""The simulation driver: many episodes at once on Ray, streamed to the episode log.

Layout of a run: one :class:`~interplay.runtime.model_server.ModelServer` actor per distinct model
(shared by both roles when they use the same one), one :class:`~interplay.runtime.agent_host.AgentHost`
actor holding both roles' agents, and in the driver an asyncio loop running up to ``concurrency`` environments at a
time. Each finished episode is appended to ``RUN_DIR/episodes.jsonl`` at once; ``resume`` skips the
ids already there.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from environments.recommendation_env import RecommendationEnv
from interplay.agent_specs import AgentSpec, SpecField, check_agent_spec, parse_spec
from interplay.backends.base import GenerationParams, check_candidate_titles
from interplay.episode_log import (
    EPISODES_FILE,
    SUMMARY_FILE,
    EpisodeLog,
    EpisodeLogWriter,
    FailureKind,
    latest_episodes,
    summarize,
)
from interplay.protocol import Role
from interplay.run_checkpoints import pin_checkpoints
from interplay.run_folder import prepare_run_folder, write_json_atomic
from interplay.runtime.env_settings import env_config
from interplay.runtime.host_settings import HOST_RESUMABLE, HostSettings
from interplay.runtime.model_server import peak_rss_mb
from interplay.runtime.role_decoding import (
    CONTROLS_OFF,
    RoleDecoding,
    SimulationGeneration,
    role_params,
    simulation_generation,
)
from interplay.simulation_data import SimulationData, load_simulation_data


class SimulationConfig(HostSettings):
    """Everything that determines a run (saved as ``RUN_DIR/config.json``); the actor and batching
    fields come from :class:`~interplay.runtime.host_settings.HostSettings`."""

    user: SpecField = Field("llm", validate_default=True, description="user agent spec: rule | llm (the shipped "
                            "UserSim) | llm:PATH_OR_ID (prompted) | usersim:CKPT | py:module:Class")
    recommender: SpecField = Field("llm", validate_default=True, description="recommender agent spec: rule | llm (the "
                                   "shipped RecSim) | llm:MODEL | recsim:CKPT | py:module:Class")
    data: str = Field("demo", description="'demo' (embedded set), a folder from 'interplay data build', or a JSON file")
    split: str = Field("test", description="which split of a built data folder to simulate")
    episodes: int = Field(12, ge=1, description="number of episodes (records are cycled)")
    max_turns: int = Field(10, ge=1, description="turn cap per episode")
    seed: int = Field(0, description="base seed; episode i uses seed+i")
    out: str = Field("runs/demo", description="run directory")
    first_speaker: Role = Field(Role.USER, description="who opens the dialogue")
    max_retries: int = Field(2, ge=0, description="retries of a malformed turn before protocol_error")
    recommender_sees_persona: bool = Field(False, description="give the recommender the persona (prompted baselines)")
    grounded: bool = Field(True, description="the user sees the catalogue facts (genres, keywords, year) of each "
                           "recommended item, never the target's identity (interplay.grounding)")
    recommender_candidates: int = Field(0, ge=0, description="show the recommender K catalogue items retrieved from "
                                        "the conversation before each of its turns (interplay.candidates; needs the "
                                        "MatchScore encoder); 0: none, the paper's setup")
    candidates_encoder: str | None = Field(None, description="the MatchScore encoder folder candidates are retrieved "
                                           "with (default: the one 'interplay matchscore train' writes)")
    replicas: int = Field(1, ge=1, description="copies of the run's model servers and agent host, spread over the "
                          "cluster's nodes (a Ray placement group, SPREAD); episodes are dealt out to them in turn. "
                          "On a cluster: one per GPU node")
    generation: GenerationParams = Field(default_factory=SimulationGeneration, description="generation settings of "
                                         "both roles (simulation defaults: interplay.runtime.role_decoding)")
    user_decoding: RoleDecoding = Field(default_factory=RoleDecoding, description="the user's own temperature, "
                                        "top_p, repetition controls and turn cap (None: generation's)")
    recommender_decoding: RoleDecoding = Field(default_factory=RoleDecoding, description="the recommender's own "
                                               "temperature, top_p, repetition controls and turn cap")
    turn_cap_percentile: float = Field(95.0, ge=0, le=100, description="cap each role's turns at this percentile of "
                                       "the tokens of people's turns of that role in the data's train split "
                                       "(interplay.turn_caps; 0: no cap from the data, max_new_tokens only)")

    #: fields that may differ between a run and its resumption
    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = HOST_RESUMABLE | {"episodes", "replicas"}

    @model_validator(mode="before")
    @classmethod
    def _earlier_configs(cls, data: object) -> object:
        """A config saved before the repetition controls and turn caps existed ran without them."""
        if isinstance(data, dict):
            gen = data.get("generation")
            if isinstance(gen, dict) and "stop" in gen and not any(k in gen for k in CONTROLS_OFF):
                data = {"turn_cap_percentile": 0.0, **data}
        return data

    @field_validator("generation", mode="before")
    @classmethod
    def _simulation_defaults(cls, value: object) -> object:
        return simulation_generation(value)

    @model_validator(mode="after")
    def _titles_need_candidates(self) -> "SimulationConfig":
        check_candidate_titles(self.generation, self.recommender_candidates)
        return self

    SPEC_FIELDS: ClassVar[tuple[str, ...]] = ("user", "recommender")

    @field_validator("user", "recommender", mode="before")
    @classmethod
    def _parse_spec(cls, value: object, info: ValidationInfo) -> AgentSpec:
        # parsed once, here, and resolved for the role (bare llm: the shipped simulator); a
        # ValueError naming the spec
        return parse_spec(value if isinstance(value, AgentSpec) else str(value), Role(info.field_name))

    @property
    def specs(self) -> dict[Role, AgentSpec]:
        """The two agent specs, as parsed by the config."""
        return {Role.USER: self.user, Role.RECOMMENDER: self.recommender}

    def role_generation(self, caps: dict[Role, int] | None = None) -> dict[Role, GenerationParams]:
        """Each role's generation settings: ``generation``, that role's decoding settings and its
        turn cap from the data (``caps``, :func:`turn_caps`)."""
        return role_params(self.generation, {Role.USER: self.user_decoding,
                                             Role.RECOMMENDER: self.recommender_decoding}, caps)

    def identity(self) -> dict:
        """The config minus settings a resumed run may change."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RESUMABLE_CHANGES}


def turn_caps(cfg: SimulationConfig) -> dict[Role, int]:
    """Each model-backed role's turn cap from the data (:mod:`interplay.turn_caps`): the
    ``cfg.turn_cap_percentile`` of its human turns' tokens under its own tokenizer; none for a
    role with its own ``max_new_tokens``, without a local model, or on data without dialogues."""
    from interplay.agent_specs import model_of
    from interplay.backends.default_model import resolve_model_path
    from interplay.prompting import load_prompt_tokenizer
    from interplay.turn_caps import caps_from_records, caps_records

    if cfg.turn_cap_percentile <= 0:
        return {}
    own = {Role.USER: cfg.user_decoding.max_new_tokens, Role.RECOMMENDER: cfg.recommender_decoding.max_new_tokens}
    models = {role: model_of(spec) for role, spec in cfg.specs.items() if own[role] is None}
    models = {role: m for role, m in models.items() if m is not None}
    records = caps_records(cfg.data, cfg.split) if models else []
    if not records:
        return {}
    loaded: dict[str, object] = {}
    tokenizers = {}
    for role, m in models.items():
        path = resolve_model_path(m)
        if path not in loaded:
            loaded[path] = load_prompt_tokenizer(path)
        tokenizers[role] = loaded[path]
    return caps_from_records(records, tokenizers, cfg.turn_cap_percentile)


def plan_episodes(cfg: SimulationConfig, data: SimulationData) -> list[tuple[str, int, int]]:
    """(episode id, seed, index into data.episodes) for every episode of the run, in order."""
    n = len(data.episodes)
    if n == 0:
        raise ValueError(f"data {cfg.data!r} has no episodes")
    return [(f"{i:06d}-{data.episodes[i % n].record_id}", cfg.seed + i, i % n) for i in range(cfg.episodes)]


class RunStopped(RuntimeError):
    """The run cannot go on (an actor died more often than it may be restarted); everything
    finished is in the episode log, and ``--resume`` continues."""


async def _actors_alive(actors: list, timeout_s: float = 600.0) -> str | None:
    """None when every actor answers (one that is restarting is waited for); else why not."""
    import ray

    deadline = time.monotonic() + timeout_s
    for actor in actors:
        while True:
            try:
                await asyncio.wait_for(actor.ping.remote(), max(1.0, deadline - time.monotonic()))
                break
            except ray.exceptions.ActorUnavailableError:  # restarting: ask again shortly
                if time.monotonic() > deadline:
                    return f"an actor did not come back within {timeout_s:.0f} s"
                await asyncio.sleep(0.5)
            except (ray.exceptions.RayActorError, asyncio.TimeoutError) as exc:
                return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


async def _drive(cfg: SimulationConfig, data: SimulationData, todo, sets: list, writer: EpisodeLogWriter,
                 on_done: Callable[[EpisodeLog], None], retriever=None) -> str | None:
    """Run the episodes of ``todo``, the i-th on replica set i mod len(sets); return why the run
    stopped early (None: it did not)."""
    from interplay.runtime.agent_host import RayAgentHandle

    env_cfg = env_config(max_turns=cfg.max_turns, first_speaker=cfg.first_speaker, max_retries=cfg.max_retries,
                         recommender=cfg.specs[Role.RECOMMENDER], recommender_sees_persona=cfg.recommender_sees_persona,
                         catalogue=data.catalogue, grounded=cfg.grounded, candidates=retriever,
                         candidates_k=cfg.recommender_candidates)
    sem = asyncio.Semaphore(cfg.concurrency)
    actors = [a for s in sets for a in {id(h.actor): h.actor for h in s.hosts.values()}.values()] + \
        [a for s in sets for a in s.servers.values()]
    stopped: list[str] = []

    async def one(n: int, episode_id: str, seed: int, idx: int) -> None:
        hosts = sets[n % len(sets)].hosts
        async with sem:
            if stopped:
                return
            user = RayAgentHandle(hosts[Role.USER], episode_id, seed)
            rec = RayAgentHandle(hosts[Role.RECOMMENDER], episode_id, seed)
            env = RecommendationEnv(user, rec, env_cfg)
            episode = await env.run(episode_id, data.episodes[idx], seed, str(cfg.user), str(cfg.recommender))
            writer.write(episode)
            on_done(episode)
            await asyncio.gather(user.close(), rec.close(), return_exceptions=True)
            if episode.failure is FailureKind.INFRASTRUCTURE and not stopped:
                why = await _actors_alive(actors)  # restarted (go on) or dead for good (stop)
                if why and not stopped:
                    stopped.append(why)

    await asyncio.gather(*(one(n, *t) for n, t in enumerate(todo)))
    return stopped[0] if stopped else None


def run_simulation(cfg: SimulationConfig, resume: bool = False, ray_address: str | None = None,
                   progress: bool = True, rerun_failed: bool = False) -> dict:
    """Run (or resume) a simulation; return the run summary, also written to ``summary.json``.

    A resumed run skips the episodes already logged except infrastructure failures (a dead actor,
    a server down), which it runs again; with ``rerun_failed`` every failed episode is run again."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from interplay.runtime import ray_cluster
    from interplay.runtime.hosts import placement, start_replicas

    specs = cfg.specs
    for role, spec in specs.items():
        check_agent_spec(spec, role)  # fail before touching the run dir
    data = load_simulation_data(cfg.data, cfg.split)
    retriever = None
    if cfg.recommender_candidates:  # built (and its encoder found) before touching the run dir
        from interplay.candidates import CandidateRetriever

        retriever = CandidateRetriever.for_data(cfg.data, data.catalogue, cfg.candidates_encoder)
    caps = turn_caps(cfg)  # read before touching the run dir
    prepare_run_folder(cfg.out, cfg, resume, what="run", marks=(EPISODES_FILE,))
    pin_checkpoints(cfg.out, specs.values())
    plan = plan_episodes(cfg, data)
    run_dir = Path(cfg.out)
    started = ray_cluster.connect(address=ray_address)
    t0 = time.perf_counter()
    this_run: list[EpisodeLog] = []
    stop: str | None = None
    server_stats: dict = {}
    host_rss = 0.0
    placed: dict = {}
    try:
        with EpisodeLogWriter(run_dir) as writer:
            done = writer.existing_ids(rerun_failed=rerun_failed)
            todo = [t for t in plan if t[0] not in done]
            sets = start_replicas(specs, data.catalogue, cfg, cfg.replicas, params=cfg.role_generation(caps)) \
                if todo else []
            placed = placement(sets) if sets else {}
            with Progress(TextColumn("[bold]simulate"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[last]}"), TimeElapsedColumn(), disable=not progress) as bar:
                task = bar.add_task("episodes", total=len(plan), completed=len(plan) - len(todo), last="")

                def on_done(ep: EpisodeLog) -> None:
                    this_run.append(ep)
                    bar.update(task, advance=1, last=f"{ep.episode_id}: {ep.termination.value}")

                stop = asyncio.run(_drive(cfg, data, todo, sets, writer, on_done, retriever))
            server_stats = {(m if len(sets) == 1 else f"{m}#{i}"): _ask(s.stats, {})
                            for i, rs in enumerate(sets) for m, s in rs.servers.items()}
            host_rss = max((_ask(next(iter(rs.hosts.values())).actor.peak_rss_mb, 0.0) for rs in sets if rs.hosts),
                           default=0.0)
    finally:
        wall = time.perf_counter() - t0
        ray_cluster.disconnect(started)
    everything = latest_episodes(run_dir / EPISODES_FILE)
    planned = {p[0] for p in plan}
    summary = summarize([e for e in everything if e.episode_id in planned])
    turns_now = sum(e.num_turns for e in this_run)
    summary.update(
        planned=len(plan),
        episodes_this_invocation=len(this_run),
        wall_s=round(wall, 3),
        turns_per_s=turns_now / wall if wall > 0 else 0.0,
        model_servers=server_stats,
        # peak RSS per process (MiB): the run's peak total is at most their sum
        peak_rss_mb={"driver": peak_rss_mb(), "agent_host": host_rss,
                     **{f"model_server_{i}": s.get("peak_rss_mb", 0.0) for i, s in enumerate(server_stats.values())}},
        records_left_out=data.left_out,  # records with no usable target (no target, not in the catalogue)
        placement=placed,  # where each replica's actors ran (this invocation)
        # each role's turn cap from the data (tokens; interplay.turn_caps) and the settings it decoded with
        turn_caps={role.value: cap for role, cap in caps.items()},
        decoding={role.value: p.model_dump(mode="json", exclude={"partner_turn", "seed"})
                  for role, p in cfg.role_generation(caps).items()},
    )
    if stop:
        summary["stopped"] = f"an actor died more than {cfg.actor_restarts} times ({stop})"
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    if stop:
        raise RunStopped(f"run stopped: {summary['stopped']}; {summary['episodes']} of {len(plan)} episodes are in "
                         f"{run_dir / EPISODES_FILE}; continue with --resume")
    return summary


def _ask(method, default):
    """A dead actor's statistics are missing, not an error: the run's results are on disk."""
    import ray

    try:
        return ray.get(method.remote(), timeout=60)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return default


def load_config(path: str | Path) -> SimulationConfig:
    """A config from a JSON file (the format of ``RUN_DIR/config.json``)."""
    return SimulationConfig.model_validate(json.loads(Path(path).read_text()))
