"""Plug-ins from installed packages: entry points that add agent kinds and backends.

An installed package declares ``interplay.agents`` entry points (each an
:class:`~interplay.agent_specs.AgentKind`) and ``interplay.backends`` entry points (each a backend
factory ``(model, **kwargs) -> backend``, a class or function, optionally with a ``capabilities``
attribute: :class:`~interplay.backends.base.BackendCapabilities`). The registries load them
whenever a name is not known yet, in whichever process asks: the driver, the agent host actor,
the model server actor, the studio.
"""

from __future__ import annotations

from collections.abc import Callable, Container

AGENT_GROUP = "interplay.agents"
BACKEND_GROUP = "interplay.backends"


def load_entry_points(group: str, register: Callable[[str, object], None], known: Container[str]) -> list[str]:
    """Register every entry point of ``group`` whose name is not in ``known`` (``register(name,
    loaded_object)``); returns the names registered. An entry point that fails to load is an
    ImportError naming it and its package."""
    from importlib.metadata import entry_points

    added = []
    for ep in entry_points(group=group):
        if ep.name in known:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported with its name
            dist = getattr(ep.dist, "name", "?")
            raise ImportError(f"entry point {ep.name!r} ({group}, package {dist}: {ep.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        register(ep.name, obj)
        added.append(ep.name)
    return added
