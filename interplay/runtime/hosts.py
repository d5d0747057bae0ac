"""Start-up of a run's actors: the model servers and the agent host, for a simulation or an evaluation."""

from __future__ import annotations

import os
from typing import Protocol

from interplay.agent_specs import AgentSpec, backend_of, model_of
from interplay.backends.base import GenerationParams
from interplay.protocol import Role


class HostSettings(Protocol):
    """What start-up reads from a run's or an evaluation's config (both have these fields)."""

    generation: GenerationParams
    dtype: str
    max_batch: int
    batch_wait_ms: float
    concurrency: int
    prefix_cache_mb: float
    actor_restarts: int


def start_agent_hosts(specs: dict[Role, AgentSpec], catalogue, cfg: HostSettings):
    """One :class:`ModelServer` actor per distinct model of ``specs`` (CPUs split between them) and
    one :class:`AgentHost` actor for all roles; returns ``(host refs by role, servers by model)``.
    ``cfg.prefix_cache_mb`` > 0 keeps each episode's KV cache in transformers-backed servers."""
    import ray

    from interplay.runtime.agent_host import AgentHost, HostRef
    from interplay.runtime.model_server import ModelServer

    parsed = dict(specs)
    generation, dtype, max_batch, concurrency = cfg.generation, cfg.dtype, cfg.max_batch, cfg.concurrency
    batch_wait_ms, prefix_cache_mb = cfg.batch_wait_ms, cfg.prefix_cache_mb
    models = {role: model_of(spec) for role, spec in parsed.items()}
    distinct = sorted({m for m in models.values() if m is not None})
    backend = {models[role]: backend_of(spec) for role, spec in parsed.items() if models[role] is not None}
    cpus = int(ray.available_resources().get("CPU", os.cpu_count() or 1))
    per_server = max(1, cpus // max(1, len(distinct)))
    # glibc: few malloc arenas (generation runs in worker threads, whose arenas kept freed KV buffers
    # resident). A fixed low mmap threshold cut RSS further but made every decode step page-fault
    # its logits: batch-1 generation was 25% slower (measured), so it is not set.
    malloc = {"MALLOC_ARENA_MAX": "2"}
    # a dead server or host is restarted (its constructor runs again) up to actor_restarts times;
    # calls in flight when it died fail (their episodes end as infrastructure failures), calls
    # made while it restarts wait for it
    restarts = cfg.actor_restarts
    server_cls = ray.remote(num_cpus=per_server, runtime_env={"env_vars": malloc}, max_restarts=restarts)(ModelServer)
    # vLLM schedules its own continuous batch: hand it everything that waits, never small slices
    batch_of = {m: max(max_batch, 2 * concurrency) if backend[m] == "vllm" else max_batch for m in distinct}
    servers = {
        m: server_cls.remote(m, dtype=dtype, max_batch=batch_of[m], batch_wait_ms=batch_wait_ms,
                             num_threads=per_server, backend=backend[m],
                             prefix_cache_mb=prefix_cache_mb if backend[m] == "transformers" else 0.0,
                             catalogues={catalogue.key: catalogue.titles()})
        for m in distinct
    }
    paths = {m: ray.get(s.model_path.remote()) for m, s in servers.items()}
    host_cls = ray.remote(num_cpus=0, max_concurrency=max(4, concurrency * 2 * len(parsed)),
                          max_restarts=restarts)(AgentHost)
    actor = host_cls.remote(parsed, catalogue, generation,
                            {role: servers[m] for role, m in models.items() if m is not None},
                            {role: paths[m] for role, m in models.items() if m is not None})
    hosts = {role: HostRef(actor, role) for role in parsed}
    return hosts, servers
