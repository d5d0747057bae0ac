"""The models and data talk sessions share in one process: one backend (with its prompt
tokenizer) per (backend, model), loaded once under its own lock, and simulation data per source;
agents are built with the :class:`~interplay.agent_specs.AgentContext` the Ray agent host passes."""

from __future__ import annotations

import threading

from interplay.agent import Agent
from interplay.agent_specs import (
    AgentContext,
    AgentSpec,
    backend_of,
    build_agent,
    model_of,
    role_refusal,
)
from interplay.backends.base import GenerationParams
from interplay.catalogue import Catalogue
from interplay.protocol import Role
from interplay.simulation_data import SimulationData, load_simulation_data

__all__ = ["AgentFactory"]

class _SerialBackend:
    """A backend whose every method call holds one lock (for backends that are not thread-safe);
    attributes such as ``capabilities`` and ``model_path`` read through."""

    def __init__(self, backend: object):
        self._backend = backend
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        value = getattr(self._backend, name)
        if not callable(value):
            return value

        def locked(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return locked


class AgentFactory:
    """The process-wide resources talk sessions share: loaded simulation data (per data source
    and split) and model backends (one per (backend, model), with its prompt tokenizer).
    Thread-safe: each resource loads once under its own lock (a model loading does not hold up
    sessions of other agents); generation on one backend is serialised unless the backend
    is declared thread-safe (``BackendCapabilities.thread_safe``). ``params`` are the generation settings of every
    model agent it builds; ``dtype`` and ``num_threads`` go to the backend."""

    _shared: "AgentFactory | None" = None
    _shared_lock = threading.Lock()

    def __init__(self, params: GenerationParams | None = None, dtype: str = "auto", num_threads: int | None = None):
        self.params = params or GenerationParams()
        self.dtype = dtype
        self.num_threads = num_threads
        self._lock = threading.Lock()  # guards the dicts; each resource loads under its own lock
        self._loading: dict[tuple, threading.Lock] = {}
        self._backends: dict[tuple[str, str], tuple[object, object]] = {}
        self._data: dict[tuple[str, str], SimulationData] = {}

    def _key_lock(self, key: tuple) -> threading.Lock:
        with self._lock:
            return self._loading.setdefault(key, threading.Lock())

    @classmethod
    def shared(cls) -> "AgentFactory":
        """The factory of this process (default settings), for sessions started without one."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def data(self, source: str, split: str = "test") -> SimulationData:
        """``load_simulation_data(source, split)``, loaded once; ValueError naming a bad source."""
        key = (source, split)
        with self._key_lock(("data", *key)):
            if key not in self._data:
                self._data[key] = load_simulation_data(source, split)  # DataError is a ValueError
            return self._data[key]

    def backend(self, spec: AgentSpec) -> tuple[object | None, object | None]:
        """``(backend, tokenizer)`` for the spec's model, created on first use; ``(None, None)``
        for a spec without a model (rule and ``py:`` agents, a zero-shot model served over HTTP).
        A model that cannot be loaded is a ValueError of one line."""
        model = model_of(spec)
        if model is None:
            return None, None
        name = backend_of(spec)
        key = (name, model)
        with self._key_lock(("backend", *key)):
            if key not in self._backends:
                from interplay.backends.registry import backend_capabilities, create_backend
                from interplay.prompting import load_prompt_tokenizer

                try:
                    backend = create_backend(name, model, dtype=self.dtype, num_threads=self.num_threads)
                    path = getattr(backend, "model_path", None) or model
                    tokenizer = load_prompt_tokenizer(str(path))  # what AgentHost renders prompts with
                except Exception as exc:  # noqa: BLE001 - any loading failure is the spec's, said in one line
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise ValueError(f"agent spec {str(spec)!r}: cannot load model {model} on {name}: "
                                     f"{type(exc).__name__}: {first}") from None
                # a backend not declared thread-safe (BackendCapabilities.thread_safe) gets its calls serialised
                if not backend_capabilities(name).thread_safe:
                    backend = _SerialBackend(backend)
                self._backends[key] = (backend, tokenizer)
            return self._backends[key]

    def build(self, spec: AgentSpec, role: Role, catalogue: Catalogue, seed: int) -> Agent:
        """A fresh agent of ``spec`` for ``role`` (the :class:`AgentContext` the Ray agent host
        passes, with this process's backend); ValueError of one line when it cannot play it."""
        text = str(spec)
        if (refusal := role_refusal(spec, role)) is not None:  # before its model is loaded
            raise ValueError(refusal)
        backend, tokenizer = self.backend(spec)
        ctx = AgentContext(role=role, arg=spec.arg, catalogue=catalogue, seed=seed, params=self.params,
                           backend=backend, tokenizer=tokenizer)
        try:
            return build_agent(spec, ctx)
        except (ValueError, TypeError, ImportError) as exc:
            msg = " ".join(str(exc).split())
            raise ValueError(msg if text in msg else f"agent spec {text!r}: {msg}") from None
