"""A run pins the weights it ran (checkpoints.json): result tables name those weights after the
spec's folder has changed, and a resumption on changed weights is refused, on real runs."""

from __future__ import annotations

import json
import shutil

import pytest
from test_simulation import simulate

from interplay.results_docs import checkpoint_hash
from interplay.run_checkpoints import CHECKPOINTS_FILE, pin_checkpoints, recorded_checkpoint
from interplay.run_folder import RunDirError


def _retrain(model_dir):
    """Change the weights in place, as a retrained or newly shipped simulator does."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)
    model.save_pretrained(model_dir)


def test_a_run_keeps_the_hash_of_the_weights_it_ran_and_refuses_to_resume_on_others(tmp_path, tiny_model_dir):
    model = tmp_path / "usersim"
    shutil.copytree(tiny_model_dir, model)
    spec = f"llm:{model}"
    before = checkpoint_hash(model)
    out = tmp_path / "run"
    simulate("--user", spec, "--recommender", "rule", "--episodes", 1, "--max-turns", 2, "--out", out)
    assert json.loads((out / CHECKPOINTS_FILE).read_text()) == {spec: before, "rule": "-"}

    _retrain(model)
    after = checkpoint_hash(model)
    assert after != before
    assert recorded_checkpoint(out, spec) == before  # the table names what ran, not what the folder holds now
    assert recorded_checkpoint(tmp_path / "never-ran", spec) == after  # a folder from before pinning: the current weights
    refused = simulate("--user", spec, "--recommender", "rule", "--episodes", 2, "--max-turns", 2, "--out", out,
                       "--resume", check=False)
    assert refused.returncode != 0
    said = "".join((refused.stdout + refused.stderr).split())  # the terminal wraps long lines anywhere
    assert f"{out / CHECKPOINTS_FILE}:cannotresume,theweightschanged" in said and before in said and after in said
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 1  # nothing produced is lost

    # the same weights resume; a spec the run did not have before is added
    other = tmp_path / "other"
    pin_checkpoints(other, [spec])
    assert pin_checkpoints(other, [spec, "rule"]) == {spec: after, "rule": "-"}
    _retrain(model)
    with pytest.raises(RunDirError, match="weights changed"):
        pin_checkpoints(other, [spec])
