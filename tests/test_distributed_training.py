"""`interplay train` on two processes (DDP over gloo on this CPU machine), launched the way users
launch it: `accelerate launch --config_file experiments/accelerate/cpu_ddp_2proc.yaml`."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, subprocess_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(ckpt: Path) -> list[float]:
    saved = json.loads((ckpt / "interplay_training.json").read_text())
    return [h["loss"] for h in saved["log_history"] if "loss" in h]


def test_two_processes_give_the_one_process_loss_curve_and_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    """Two DDP processes x micro-batch 1 (accumulation 1) see the same records per optimizer step
    as one process with accumulation 2: the masked loss curve and the final weights agree within
    float tolerance; rank 0 alone writes a checkpoint that loads."""
    from safetensors.torch import load_file

    from interplay.data.pearl import load_pearl
    from interplay.simulation_data import load_demo

    records = list(load_pearl(ROOT / "tests" / "fixtures" / "pearl_sample.jsonl", load_demo().catalogue,
                              on_error=lambda e: None))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records * 4))
    interplay = shutil.which("interplay") or str(Path(sys.executable).parent / "interplay")
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    common = ["train", "--role", "recommender", "--data", str(data), "--model", str(tiny_model_dir),
              "--max-steps", "6", "--lr", "3e-3", "--batch-size", "1", "--logging-steps", "1", "--report-to", "none",
              "--no-grounded", "--dtype", "fp32"]
    one, two = tmp_path / "one", tmp_path / "two"
    env = subprocess_env(OMP_NUM_THREADS="1")
    subprocess.run([interplay, *common, "--grad-accum", "2", "--out", str(one)], check=True, env=env,
                   capture_output=True, text=True, timeout=300)
    run = subprocess.run([accelerate, "launch", "--config_file", str(ROOT / "experiments/accelerate/cpu_ddp_2proc.yaml"),
                          "--main_process_port", str(_free_port()), interplay, *common, "--grad-accum", "1",
                          "--out", str(two)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("checkpoint:") == 1  # one report, from rank 0
    info = json.loads((two / "interplay_training.json").read_text())
    assert info["metrics"]["world_size"] == 2
    assert json.loads((one / "interplay_training.json").read_text())["metrics"]["world_size"] == 1
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 6 and a[-1] < a[0]
    assert b == pytest.approx(a, abs=1e-3)
    wa, wb = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-4), k
    from agents.llm import FineTunedRecommenderSimulator
    from interplay.backends.transformers_backend import TransformersBackend

    from interplay.episode import Observation
    from interplay.protocol import Role
    from interplay.training.tokenize import record_view

    backend = TransformersBackend(str(two), dtype="float32")  # the checkpoint plays the recommender
    agent = FineTunedRecommenderSimulator(backend, backend.tokenizer)
    agent.reset(record_view(records[0], Role.RECOMMENDER))
    turn = agent.act(Observation(history=[], turn_index=0))
    assert turn.meta["decoding"] == "constrained" and turn.action in Observation(history=[], turn_index=0).legal_actions(Role.RECOMMENDER)
