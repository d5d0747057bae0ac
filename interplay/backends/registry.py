"""Generation backends by name, so agent kinds and the model server can choose one.

A backend factory takes ``(model, dtype=..., num_threads=...)`` and returns an object with
``generate(prompts, params) -> list[str]`` (see :class:`~interplay.backends.base.GenerationBackend`)
and, optionally, a ``model_path`` attribute and a ``tokenizer``; what else it can do it declares in
``capabilities`` (:class:`~interplay.backends.base.BackendCapabilities`). ``transformers`` and ``vllm``
run inside a model-server actor; ``openai`` (an OpenAI-compatible HTTP server, ``base_url=``) is
created in the process that hosts the agents.
"""

from __future__ import annotations

from collections.abc import Callable

from interplay.backends.base import BackendCapabilities
from interplay.backends.builtin_capabilities import OPENAI, TRANSFORMERS, VLLM

BackendFactory = Callable[..., object]
BACKENDS: dict[str, BackendFactory] = {}
#: what each registered backend declares it can do, known before one is created (the driver decides
#: batching, prefix caching and up-front checks from these, never from a backend's name)
CAPABILITIES: dict[str, BackendCapabilities] = {}


def register_backend(name: str, factory: BackendFactory, capabilities: BackendCapabilities | None = None) -> None:
    """Make ``name`` usable as an agent kind's backend; ``capabilities`` default to the factory's
    ``capabilities`` attribute (a backend class declares them), else none."""
    declared = capabilities if capabilities is not None else getattr(factory, "capabilities", None)
    BACKENDS[name] = factory
    CAPABILITIES[name] = declared if isinstance(declared, BackendCapabilities) else BackendCapabilities()


def _known(name: str) -> None:
    if name not in BACKENDS:
        from interplay.plugins import BACKEND_GROUP, load_entry_points

        load_entry_points(BACKEND_GROUP, register_backend, BACKENDS)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")


def create_backend(name: str, model: str | None, **kwargs) -> object:
    """Instantiate the backend ``name`` for ``model`` (an installed plug-in's ``interplay.backends``
    entry point is loaded when the name is not known yet, in whichever process asks)."""
    _known(name)
    return BACKENDS[name](model, **kwargs)


def backend_capabilities(name: str) -> BackendCapabilities:
    """What the backend ``name`` declared at registration."""
    _known(name)
    return CAPABILITIES[name]


def _transformers(model: str | None, **kwargs):
    from interplay.backends.transformers_backend import TransformersBackend

    return TransformersBackend(model, **kwargs)


register_backend("transformers", _transformers, TRANSFORMERS)


def _vllm(model: str | None, **kwargs):
    from interplay.backends.vllm_backend import VLLMBackend

    return VLLMBackend(model, **kwargs)


register_backend("vllm", _vllm, VLLM)


def _openai(model: str | None, *, base_url: str, **kwargs):
    from interplay.backends.openai_http import OpenAIChatBackend

    return OpenAIChatBackend(base_url, model or "", **kwargs)


register_backend("openai", _openai, OPENAI)
