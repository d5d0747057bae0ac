"""What a checkpoint of ``interplay train`` says about itself: the recipe it was trained with
(``interplay_training.json``), read by the agent kinds that load it and by evaluation records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interplay.protocol import Role

if TYPE_CHECKING:
    from interplay.agent_specs import AgentSpec


def training_config(checkpoint: str | None) -> dict:
    """The ``config`` a checkpoint of ``interplay train`` was trained with (empty if none)."""
    import json
    from pathlib import Path

    path = Path(checkpoint or "") / "interplay_training.json"
    return json.loads(path.read_text()).get("config", {}) if path.is_file() else {}


#: the recipe settings an evaluation records about the checkpoint it evaluated
RECIPE_KEYS = ("role", "data", "epochs", "grounded", "grounding_match", "action_loss_weight", "counterfactual_negatives",
               "decision_examples", "whole_dialogues", "recommender_candidates", "model", "max_train_records",
               "prompt_layout")


def agent_training(spec: "str | AgentSpec") -> dict | None:
    """What the spec's checkpoint was trained on, for the record of an evaluation: the recipe
    settings, and the training data's source (``simulated`` when it was built from episode logs)
    and train record count from its ``build.json`` (capped by ``max_train_records``). For
    simulated data, ``simulated_by`` names the user and recommender agents of the run the episodes
    came from (its ``config.json``). None for an agent without a training record (a prompted
    model, a rule)."""
    import json
    from pathlib import Path

    from interplay.agent_specs import AgentSpec, model_of

    parsed = spec if isinstance(spec, AgentSpec) else AgentSpec.parse(spec)
    model = model_of(parsed)
    config = training_config(model) if model else {}
    if not config:
        return None
    out = {k: config.get(k) for k in RECIPE_KEYS}
    build = Path(config.get("data") or "") / "build.json"
    if build.is_file():
        info = json.loads(build.read_text())
        out["data_source"] = info.get("source")
        out["train_records"] = (info.get("records") or {}).get("train")
        if out["train_records"] is not None and config.get("max_train_records"):
            out["train_records"] = min(out["train_records"], config["max_train_records"])
        if info.get("source") == "episodes":
            runs = [Path(p) / "config.json" for p in info.get("paths") or []]
            out["simulated_by"] = [{k: json.loads(r.read_text()).get(k) for k in ("user", "recommender")}
                                   for r in runs if r.is_file()]
    out["simulated"] = out.get("data_source") == "episodes"
    return out


def trained_grounded(checkpoint: str | None) -> bool:
    """Whether a checkpoint was trained on grounded user observations (checkpoints from before
    grounding existed were not)."""
    config = training_config(checkpoint)
    return bool(config.get("grounded", False)) and config.get("role") == Role.USER.value


def trained_prompt_layout(checkpoint: str | None) -> int:
    """The header layout a checkpoint was trained on (1 for checkpoints from before layouts were
    recorded; see :data:`interplay.training.serialize.PROMPT_LAYOUTS`)."""
    return int(training_config(checkpoint).get("prompt_layout", 1))


def trained_candidates(checkpoint: str | None) -> bool:
    """Whether a RecSim checkpoint was trained with candidates in its prompt."""
    config = training_config(checkpoint)
    return config.get("recommender_candidates", 0) > 0 and config.get("role") == Role.RECOMMENDER.value
