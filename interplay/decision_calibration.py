"""A UserSim checkpoint's calibrated accept threshold: the P(accept) cut-off chosen on a valid
split against the humans' decisions, stored beside the weights so that every later use of the
checkpoint (episodes, replays, decisions) decides the same way.

``interplay evaluate calibrate RUN`` writes it from a finished ``evaluate user`` run on a valid
split (parts ``human``, ``--decision score``); ``usersim:CKPT`` agents read it
(:class:`agents.llm.LLMAgent`'s ``accept_threshold``).
"""

from __future__ import annotations

import json
from pathlib import Path

CALIBRATION_FILE = "decision_calibration.json"


def thresholded_action(probs: dict[str, float], threshold: float) -> str:
    """``accept`` when P(accept) >= ``threshold`` (or nothing else is legal), else the likeliest other action."""
    others = {a: p for a, p in probs.items() if a != "accept"}
    return "accept" if probs.get("accept", 0.0) >= threshold or not others else max(others, key=others.get)


def calibrated_threshold(checkpoint: str | Path | None) -> float | None:
    """The checkpoint's calibrated accept threshold, or None when it has none."""
    path = Path(checkpoint or "") / CALIBRATION_FILE
    if not checkpoint or not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())["accept_threshold"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no readable 'accept_threshold' ({exc})") from exc
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{path}: field 'accept_threshold' is {value!r}, not a probability")
    return float(value)


def calibrate_from_run(run: str | Path) -> dict:
    """Write the best threshold of an ``evaluate user`` run on a non-test split into the
    evaluated checkpoint; returns what was written. Raises ValueError naming what is missing."""
    run = Path(run)
    config_path, metrics_path = run / "config.json", run / "metrics.json"
    for path in (config_path, metrics_path):
        if not path.is_file():
            raise ValueError(f"{path}: missing (calibrate a finished 'interplay evaluate user' run)")
    config, metrics = json.loads(config_path.read_text()), json.loads(metrics_path.read_text())
    kind, _, checkpoint_arg = str(config.get("agent", "")).partition(":")  # usersim:CKPT_DIR
    if kind != "usersim" or not checkpoint_arg:
        raise ValueError(f"{config_path}: field 'agent' is {config.get('agent')!r}; only usersim:CKPT checkpoints "
                         "carry a calibrated threshold")
    if config.get("split") == "test":
        raise ValueError(f"{config_path}: field 'split' is 'test'; choose the threshold on valid, not on test")
    if config.get("decision") != "score":
        raise ValueError(f"{config_path}: field 'decision' is {config.get('decision')!r}; calibration reads scored "
                         "decisions (--decision score)")
    human = metrics.get("human_view") or {}
    threshold = human.get("best_threshold")
    if threshold is None:
        raise ValueError(f"{metrics_path}: field 'human_view.best_threshold' is missing (no scored human decisions)")
    record = {"accept_threshold": float(threshold),
              "chosen_on": {"run": str(run), "data": config.get("data"), "split": config.get("split"),
                            "items": human.get("n"),
                            "human_rejects": human.get("human_rejects"),
                            "balanced_accuracy_at_threshold": human.get("best_threshold_balanced_accuracy"),
                            "roc_auc": human.get("roc_auc")}}
    checkpoint = Path(checkpoint_arg)
    if not checkpoint.is_dir():
        raise ValueError(f"{config_path}: field 'agent' names {checkpoint}, which is not a folder here")
    (checkpoint / CALIBRATION_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record
