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

BackendFactory = Callable[..., object]
BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``name`` usable as an agent kind's backend."""
    BACKENDS[name] = factory


def create_backend(name: str, model: str | None, **kwargs) -> object:
    """Instantiate the backend ``name`` for ``model``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](model, **kwargs)


def _transformers(model: str | None, **kwargs):
    from interplay.backends.transformers_backend import TransformersBackend

    return TransformersBackend(model, **kwargs)


register_backend("transformers", _transformers)


def _vllm(model: str | None, **kwargs):
    from interplay.backends.vllm_backend import VLLMBackend

    return VLLMBackend(model, **kwargs)


register_backend("vllm", _vllm)


def _openai(model: str | None, *, base_url: str, **kwargs):
    from interplay.backends.openai_http import OpenAIChatBackend

    return OpenAIChatBackend(base_url, model or "", **kwargs)


register_backend("openai", _openai)
