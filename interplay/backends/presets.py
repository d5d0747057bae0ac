"""Named models of the paper's baselines, with the sampling settings used for them.

``zero-shot:qwen3-32b`` is ``zero-shot:Qwen/Qwen3-32B`` with these settings (they override the
run's temperature / top_p / max_new_tokens for that agent). The sampling values are the model
cards' recommended settings (Qwen3 non-thinking mode; Llama 3.1 Instruct's generation_config).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPreset:
    model: str
    temperature: float
    top_p: float
    max_new_tokens: int = 256
    note: str = ""


PRESETS: dict[str, ModelPreset] = {
    "qwen3-32b": ModelPreset("Qwen/Qwen3-32B", 0.7, 0.8, note="non-thinking mode; <think> blocks are stripped anyway"),
    "llama-3.1-70b": ModelPreset("meta-llama/Llama-3.1-70B-Instruct", 0.6, 0.9),
    "qwen3-8b": ModelPreset("Qwen/Qwen3-8B", 0.7, 0.8),
    "llama-3.1-8b": ModelPreset("meta-llama/Llama-3.1-8B-Instruct", 0.6, 0.9),
}


def resolve(name: str | None) -> tuple[str | None, ModelPreset | None]:
    """(model id or path, preset or None) of a spec argument's model part."""
    if name and name.lower() in PRESETS:
        preset = PRESETS[name.lower()]
        return preset.model, preset
    return name, None
