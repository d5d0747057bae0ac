"""Text-generation backends the LLM agents prompt through."""

from interplay.backends.base import GenerationBackend, GenerationParams, cut_at_stop
from interplay.backends.default_model import DEFAULT_MODEL, resolve_model_path

__all__ = ["DEFAULT_MODEL", "GenerationBackend", "GenerationParams", "cut_at_stop", "resolve_model_path"]
