"""Connecting to Ray: a running cluster when there is one, a private local one otherwise."""

from __future__ import annotations

import os


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Initialise Ray; return True when this call started a local instance (stop it after).

    ``address`` or ``RAY_ADDRESS`` (set by ``ray job submit``) connects to that cluster;
    otherwise a new local instance starts (never silently joining another session's cluster).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        return False
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             logging_level="WARNING", log_to_driver=True)
    return True
