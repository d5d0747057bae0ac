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
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from environments.recommendation_env import EnvConfig, RecommendationEnv
from interplay.agent_specs import AgentSpec, backend_of, check_agent_spec, model_of, sees_persona
from interplay.backends.base import GenerationParams
from interplay.episode_log import (
    CONFIG_FILE,
    EPISODES_FILE,
    SUMMARY_FILE,
    EpisodeLog,
    EpisodeLogWriter,
    latest_episodes,
    summarize,
    write_json_atomic,
)
from interplay.protocol import Role
from interplay.runtime.model_server import peak_rss_mb
from interplay.simulation_data import SimulationData, load_simulation_data


class SimulationConfig(BaseModel):
    """Everything that determines a run (saved as ``RUN_DIR/config.json``)."""

    model_config = ConfigDict(extra="forbid")

    user: str = "llm"
    recommender: str = "llm"
    data: str = "demo"
    split: str = "test"
    episodes: int = Field(12, ge=1)
    max_turns: int = Field(10, ge=1)
    seed: int = 0
    out: str = "runs/demo"
    first_speaker: Role = Role.USER
    max_retries: int = Field(2, ge=0)
    recommender_sees_persona: bool = False
    #: grounded observations: the user sees the catalogue facts of each recommended item (interplay.grounding)
    grounded: bool = True
    #: recommender candidates: K catalogue items retrieved from the conversation before each
    #: recommender turn (interplay.candidates; needs the MatchScore encoder); 0: none, the paper's setup
    recommender_candidates: int = Field(0, ge=0)
    #: the MatchScore encoder folder candidates are retrieved with (None: the default one)
    candidates_encoder: str | None = None
    concurrency: int = Field(32, ge=1)  # measured: docs/performance.md
    max_batch: int = Field(32, ge=1)  # measured: docs/performance.md
    batch_wait_ms: float = 20.0
    dtype: str = "auto"
    #: per-model budget for kept episode KV caches (MiB; 0 = no reuse, plain batched generate)
    prefix_cache_mb: float = Field(1024.0, ge=0)
    generation: GenerationParams = GenerationParams()

    #: fields that may differ between a run and its resumption
    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = frozenset(
        {"episodes", "concurrency", "max_batch", "batch_wait_ms", "prefix_cache_mb"})

    def identity(self) -> dict:
        """The config minus settings a resumed run may change."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RESUMABLE_CHANGES}


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (exists without --resume, or config mismatch)."""


def plan_episodes(cfg: SimulationConfig, data: SimulationData) -> list[tuple[str, int, int]]:
    """(episode id, seed, index into data.episodes) for every episode of the run, in order."""
    n = len(data.episodes)
    if n == 0:
        raise ValueError(f"data {cfg.data!r} has no episodes")
    return [(f"{i:06d}-{data.episodes[i % n].record_id}", cfg.seed + i, i % n) for i in range(cfg.episodes)]


def _prepare_run_dir(cfg: SimulationConfig, resume: bool) -> None:
    run_dir = Path(cfg.out)
    config_path = run_dir / CONFIG_FILE
    has_log = (run_dir / EPISODES_FILE).exists() and (run_dir / EPISODES_FILE).stat().st_size > 0
    if config_path.exists() and resume:
        old = SimulationConfig.model_validate_json(config_path.read_text())
        diff = sorted(k for k, v in cfg.identity().items() if old.identity().get(k) != v)
        if diff:
            raise RunDirError(f"{config_path}: cannot resume, these settings differ: {', '.join(diff)}")
    elif (config_path.exists() or has_log) and not resume:
        raise RunDirError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_path, cfg.model_dump(mode="json"))


def start_agent_hosts(specs: dict[Role, str], catalogue, generation: GenerationParams, dtype: str = "auto",
                      max_batch: int = 32, batch_wait_ms: float = 20.0, concurrency: int = 16,
                      prefix_cache_mb: float = 0.0):
    """One :class:`ModelServer` actor per distinct model of ``specs`` (CPUs split between them) and
    one :class:`AgentHost` actor for all roles; returns ``(host refs by role, servers by model)``.
    ``prefix_cache_mb`` > 0 keeps each episode's KV cache in transformers-backed servers."""
    import ray

    from interplay.runtime.agent_host import AgentHost, HostRef
    from interplay.runtime.model_server import ModelServer

    parsed = {role: AgentSpec.parse(spec) for role, spec in specs.items()}
    models = {role: model_of(spec) for role, spec in parsed.items()}
    distinct = sorted({m for m in models.values() if m is not None})
    backend = {models[role]: backend_of(spec) for role, spec in parsed.items() if models[role] is not None}
    cpus = int(ray.available_resources().get("CPU", os.cpu_count() or 1))
    per_server = max(1, cpus // max(1, len(distinct)))
    # glibc: few malloc arenas (generation runs in worker threads, whose arenas kept freed KV buffers
    # resident). A fixed low mmap threshold cut RSS further but made every decode step page-fault
    # its logits: batch-1 generation was 25% slower (measured), so it is not set.
    malloc = {"MALLOC_ARENA_MAX": "2"}
    server_cls = ray.remote(num_cpus=per_server, runtime_env={"env_vars": malloc})(ModelServer)
    # vLLM schedules its own continuous batch: hand it everything that waits, never small slices
    batch_of = {m: max(max_batch, 2 * concurrency) if backend[m] == "vllm" else max_batch for m in distinct}
    servers = {
        m: server_cls.remote(m, dtype=dtype, max_batch=batch_of[m], batch_wait_ms=batch_wait_ms,
                             num_threads=per_server, backend=backend[m],
                             prefix_cache_mb=prefix_cache_mb if backend[m] == "transformers" else 0.0)
        for m in distinct
    }
    paths = {m: ray.get(s.model_path.remote()) for m, s in servers.items()}
    host_cls = ray.remote(num_cpus=0, max_concurrency=max(4, concurrency * 2 * len(parsed)))(AgentHost)
    actor = host_cls.remote({role: str(spec) for role, spec in parsed.items()}, catalogue, generation,
                            {role: servers[m] for role, m in models.items() if m is not None},
                            {role: paths[m] for role, m in models.items() if m is not None})
    hosts = {role: HostRef(actor, role) for role in parsed}
    return hosts, servers


async def _drive(cfg: SimulationConfig, data: SimulationData, todo, hosts, writer: EpisodeLogWriter,
                 on_done: Callable[[EpisodeLog], None], retriever=None) -> None:
    from interplay.runtime.agent_host import RayAgentHandle

    env_cfg = EnvConfig(max_turns=cfg.max_turns, first_speaker=cfg.first_speaker, max_retries=cfg.max_retries,
                        recommender_sees_persona=sees_persona(cfg.recommender, cfg.recommender_sees_persona),
                        grounding=data.catalogue if cfg.grounded else None,
                        candidates=retriever, candidates_k=cfg.recommender_candidates)
    sem = asyncio.Semaphore(cfg.concurrency)

    async def one(episode_id: str, seed: int, idx: int) -> None:
        async with sem:
            user = RayAgentHandle(hosts[Role.USER], episode_id, seed)
            rec = RayAgentHandle(hosts[Role.RECOMMENDER], episode_id, seed)
            env = RecommendationEnv(user, rec, env_cfg)
            episode = await env.run(episode_id, data.episodes[idx], seed, cfg.user, cfg.recommender)
            writer.write(episode)
            on_done(episode)
            await asyncio.gather(user.close(), rec.close(), return_exceptions=True)

    await asyncio.gather(*(one(*t) for t in todo))


def run_simulation(cfg: SimulationConfig, resume: bool = False, ray_address: str | None = None,
                   progress: bool = True, rerun_failed: bool = False) -> dict:
    """Run (or resume) a simulation; return the run summary, also written to ``summary.json``.

    A resumed run skips the episodes already logged except infrastructure failures (a dead actor,
    a server down), which it runs again; with ``rerun_failed`` every failed episode is run again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from interplay.runtime import ray_cluster

    for role, spec in ((Role.USER, cfg.user), (Role.RECOMMENDER, cfg.recommender)):
        check_agent_spec(spec, role)  # fail before touching the run dir
    data = load_simulation_data(cfg.data, cfg.split)
    retriever = None
    if cfg.recommender_candidates:  # built (and its encoder found) before touching the run dir
        from interplay.candidates import CandidateRetriever

        retriever = CandidateRetriever.for_data(cfg.data, data.catalogue, cfg.candidates_encoder)
    _prepare_run_dir(cfg, resume)
    plan = plan_episodes(cfg, data)
    run_dir = Path(cfg.out)
    started = ray_cluster.connect(address=ray_address)
    t0 = time.perf_counter()
    this_run: list[EpisodeLog] = []
    server_stats: dict = {}
    host_rss = 0.0
    try:
        with EpisodeLogWriter(run_dir) as writer:
            done = writer.existing_ids(rerun_failed=rerun_failed)
            todo = [t for t in plan if t[0] not in done]
            hosts, servers = (start_agent_hosts({Role.USER: cfg.user, Role.RECOMMENDER: cfg.recommender}, data.catalogue,
                                                 cfg.generation, cfg.dtype, cfg.max_batch, cfg.batch_wait_ms,
                                                 cfg.concurrency, cfg.prefix_cache_mb) if todo else ({}, {}))
            with Progress(TextColumn("[bold]simulate"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[last]}"), TimeElapsedColumn(), disable=not progress) as bar:
                task = bar.add_task("episodes", total=len(plan), completed=len(plan) - len(todo), last="")

                def on_done(ep: EpisodeLog) -> None:
                    this_run.append(ep)
                    bar.update(task, advance=1, last=f"{ep.episode_id}: {ep.termination.value}")

                asyncio.run(_drive(cfg, data, todo, hosts, writer, on_done, retriever))
            import ray

            server_stats = {m: ray.get(s.stats.remote()) for m, s in servers.items()}
            host_rss = ray.get(next(iter(hosts.values())).actor.peak_rss_mb.remote()) if hosts else 0.0
    finally:
        wall = time.perf_counter() - t0
        if started:
            import ray

            ray.shutdown()
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
    )
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    return summary


def load_config(path: str | Path) -> SimulationConfig:
    """A config from a JSON file (the format of ``RUN_DIR/config.json``)."""
    return SimulationConfig.model_validate(json.loads(Path(path).read_text()))
