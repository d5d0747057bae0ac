"""Connecting to Ray: a running cluster when there is one, a private local one otherwise."""

from __future__ import annotations

import os

_reaper = None  # the watcher of the local instance this process started (session_reaper)


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Initialise Ray; return True when this call started a local instance (stop it after).

    ``address`` or ``RAY_ADDRESS`` (set by ``ray job submit``) connects to that cluster;
    otherwise a new local instance starts (never silently joining another session's cluster),
    with a watcher that kills its processes if this process dies without stopping it
    (:mod:`interplay.runtime.session_reaper`). Stop it with :func:`disconnect`.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        return False
    global _reaper
    from interplay.runtime.session_reaper import Reaper

    _reaper = Reaper()
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             logging_level="WARNING", log_to_driver=True)
    return True


def disconnect(started: bool) -> None:
    """Stop the local instance :func:`connect` started (``started``), and its watcher."""
    global _reaper
    import ray

    if not started:
        return
    ray.shutdown()
    if _reaper is not None:
        _reaper.close()
        _reaper = None
