"""Start-up of a run's actors: the model servers and the agent host, for a simulation or an evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass

from interplay.agent_specs import AgentSpec, backend_of, model_of
from interplay.backends.base import GenerationParams
from interplay.protocol import Role
from interplay.runtime.host_settings import HostSettings


def start_agent_hosts(specs: dict[Role, AgentSpec], catalogue, cfg: HostSettings,
                      params: dict[Role, GenerationParams] | None = None):
    """One :class:`ModelServer` actor per distinct model of ``specs`` (CPUs split between them) and
    one :class:`AgentHost` actor for all roles; returns ``(host refs by role, servers by model)``.
    ``cfg.prefix_cache_mb`` > 0 keeps each episode's KV cache in transformers-backed servers.
    ``params``: each role's generation settings (default ``cfg.generation`` for both)."""
    import ray

    cpus = int(ray.available_resources().get("CPU", os.cpu_count() or 1))
    return _start_set(specs, catalogue, cfg, cpus, {}, params=params)


@dataclass
class ReplicaSet:
    """One copy of a run's actors: an agent host (refs by role) and its model servers (by model)."""

    hosts: dict
    servers: dict


def start_replicas(specs: dict[Role, AgentSpec], catalogue, cfg: HostSettings, replicas: int = 1,
                   params: dict[Role, GenerationParams] | None = None) -> list[ReplicaSet]:
    """``replicas`` copies of :func:`start_agent_hosts`' actors. With more than one, each copy is
    one bundle of a Ray placement group with the ``SPREAD`` strategy (the cluster's CPUs split
    between the bundles), so on a cluster the copies go to different nodes when they fit there;
    the driver deals the episodes out to the copies in turn. A cluster with at least one GPU per
    copy gives each copy's model servers its share of them (``num_gpus``; one server per GPU when
    there are enough). One copy: no placement group."""
    import ray

    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if replicas == 1:
        return [ReplicaSet(*start_agent_hosts(specs, catalogue, cfg, params))]
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    resources = ray.cluster_resources()
    cpus = int(resources.get("CPU", os.cpu_count() or 1))
    per_set = cpus // replicas
    models = {model_of(spec) for spec in specs.values()} - {None}
    if models and per_set < len(models):
        raise ValueError(f"{replicas} replicas of {len(models)} model server(s) need {replicas * len(models)} CPUs; "
                         f"the cluster has {cpus}")
    gpus = int(resources.get("GPU", 0))
    server_gpus = (gpus // replicas) / len(models) if models and gpus >= replicas else 0.0
    # a bundle must ask for something: agent hosts alone (rule agents) take a sliver of a CPU
    bundle = {"CPU": per_set if models else 0.01}
    if server_gpus:
        bundle["GPU"] = server_gpus * len(models)
    group = placement_group([bundle] * replicas, strategy="SPREAD")
    ready, _ = ray.wait([group.ready()], timeout=300)
    if not ready:
        raise RuntimeError(f"the cluster cannot place {replicas} replicas of {bundle} within 300 s")
    return [ReplicaSet(*_start_set(specs, catalogue, cfg, max(1, per_set),
                                   {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, i)},
                                   host_cpus=0.01 if not models else 0, server_gpus=server_gpus, params=params))
            for i in range(replicas)]


def placement(sets: list[ReplicaSet]) -> dict:
    """Where each replica's actors run (node ids and IPs), and how many nodes they cover."""
    import ray

    out = []
    for s in sets:
        host = next(iter(s.hosts.values())).actor if s.hosts else None
        out.append({"agent_host": ray.get(host.node.remote(), timeout=60) if host is not None else None,
                    "model_servers": {m: ray.get(a.node.remote(), timeout=60) for m, a in s.servers.items()}})
    nodes = {r["agent_host"]["node_id"] for r in out if r["agent_host"]} | \
        {n["node_id"] for r in out for n in r["model_servers"].values()}
    return {"replicas": out, "nodes": len(nodes)}


def _start_set(specs: dict[Role, AgentSpec], catalogue, cfg: HostSettings, cpus: int, scheduling: dict,
               host_cpus: float = 0, server_gpus: float = 0, params: dict[Role, GenerationParams] | None = None):
    """The model servers and agent host of one replica, on ``cpus`` CPUs (``scheduling``: Ray
    options placing them, e.g. in a placement group bundle; ``server_gpus``: each server's GPUs)."""
    import ray

    from interplay.runtime.agent_host import AgentHost, HostRef
    from interplay.runtime.model_server import ModelServer

    parsed = dict(specs)
    generation = params or {role: cfg.generation for role in parsed}
    dtype, max_batch, concurrency = cfg.dtype, cfg.max_batch, cfg.concurrency
    batch_wait_ms, prefix_cache_mb = cfg.batch_wait_ms, cfg.prefix_cache_mb
    models = {role: model_of(spec) for role, spec in parsed.items()}
    distinct = sorted({m for m in models.values() if m is not None})
    backend = {models[role]: backend_of(spec) for role, spec in parsed.items() if models[role] is not None}
    per_server = max(1, cpus // max(1, len(distinct)))
    # glibc: few malloc arenas (generation runs in worker threads, whose arenas kept freed KV buffers
    # resident). A fixed low mmap threshold cut RSS further but made every decode step page-fault
    # its logits: batch-1 generation was 25% slower (measured), so it is not set.
    malloc = {"MALLOC_ARENA_MAX": "2"}
    # a dead server or host is restarted (its constructor runs again) up to actor_restarts times;
    # calls in flight when it died fail (their episodes end as infrastructure failures), calls
    # made while it restarts wait for it
    restarts = cfg.actor_restarts
    server_cls = ray.remote(num_cpus=per_server, num_gpus=server_gpus, runtime_env={"env_vars": malloc},
                            max_restarts=restarts)(ModelServer)
    from interplay.backends.registry import backend_capabilities

    caps = {m: backend_capabilities(backend[m]) for m in distinct}
    # a backend that schedules its own continuous batch (vLLM) gets everything that waits, never small slices
    batch_of = {m: max(max_batch, 2 * concurrency) if caps[m].continuous_batching else max_batch for m in distinct}
    servers = {
        m: server_cls.options(**scheduling).remote(
            m, dtype=dtype, max_batch=batch_of[m], batch_wait_ms=batch_wait_ms, num_threads=per_server,
            backend=backend[m], prefix_cache_mb=prefix_cache_mb if caps[m].prefix_cache else 0.0,
            prefix_cache_spill=cfg.prefix_cache_spill,
            catalogues={catalogue.key: catalogue.titles()})
        for m in distinct
    }
    paths = {m: ray.get(s.model_path.remote()) for m, s in servers.items()}
    host_cls = ray.remote(num_cpus=host_cpus, max_concurrency=max(4, concurrency * 2 * len(parsed)),
                          max_restarts=restarts)(AgentHost)
    actor = host_cls.options(**scheduling).remote(parsed, catalogue, generation,
                                                  {role: servers[m] for role, m in models.items() if m is not None},
                                                  {role: paths[m] for role, m in models.items() if m is not None})
    hosts = {role: HostRef(actor, role) for role in parsed}
    return hosts, servers
