"""LoRA adapters: trained with the added tokens as PEFT trainable token rows, saved small with a
portable base name, continued by a second stage, merged at load to the same logits, refused where
a backend cannot load them."""

import json

import pytest
import torch

from interplay.protocol import Role
from interplay.backends.adapters import (ADAPTER_CONFIG, adapter_base, added_token_ids, is_adapter,
                                         load_adapter_model, merge_adapter)
from test_training import RECORDS


def _data(tmp_path, record):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train.jsonl").write_text(record.model_dump_json() + "\n")
    return data


def _train(tmp_path, base, out, steps=30, role=Role.RECOMMENDER, **kw):
    from interplay.training.train import TrainConfig, train

    return train(TrainConfig(dtype="fp32", role=role, data=str(_data(tmp_path, RECORDS[0])), out=str(out),
                             model=str(base), max_steps=steps, learning_rate=5e-3, batch_size=1, grad_accum=1,
                             logging_steps=5, report_to="none", lora=True, lora_rank=8, grounded=False, **kw))


def _losses(out):
    saved = json.loads((out / "interplay_training.json").read_text())
    return [h["loss"] for h in saved["log_history"] if "loss" in h]


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter trained on one dialogue over the tiny base (which has no added tokens yet,
    like the real default model)."""
    tmp = tmp_path_factory.mktemp("lora")
    out = tmp / "adapter"
    _train(tmp, tiny_model_dir, out)
    return out


def test_adapter_folder_is_small_and_trains_the_added_token_rows(adapter, tiny_model_dir):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    assert is_adapter(adapter) and adapter_base(adapter) == str(tiny_model_dir)
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    tok = AutoTokenizer.from_pretrained(adapter)  # the tokenizer with the added tokens travels along
    ids = added_token_ids(tok)
    assert config["trainable_token_indices"]["embed_tokens"] == ids
    weights = load_file(adapter / "adapter_model.safetensors")
    # no full embedding or head copy: only LoRA matrices and one row per added token
    rows = [w for k, w in weights.items() if "trainable_tokens" in k]
    assert len(rows) == 1 and rows[0].shape == (len(ids), 64)
    assert not any(w.shape[0] >= len(tok) for w in weights.values())
    assert any("lora_A" in k for k in weights) and not (adapter / "model.safetensors").exists()
    losses = _losses(adapter)
    assert losses[-1] < losses[0]


def test_merged_at_load_gives_the_adapter_logits_and_differs_from_the_base(adapter, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interplay.training.tokenize import add_special_tokens

    merged, tok = load_adapter_model(adapter, torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    add_special_tokens(AutoTokenizer.from_pretrained(tiny_model_dir), base)
    ids = tok("<action><recommend></action><response>Try <movie_title>Heat</movie_title></response>",
              return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = base(ids).logits
        peft = PeftModel.from_pretrained(base, adapter).eval()
        unmerged = peft(ids).logits
        got = merged.eval()(ids).logits
    assert torch.allclose(got, unmerged, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)
    # the trained rows of the added tokens are in the merged embedding (and its tied head)
    rows = merged.get_input_embeddings().weight[added_token_ids(tok)]
    assert torch.equal(rows, merged.get_output_embeddings().weight[added_token_ids(tok)])


def test_backend_and_recsim_spec_load_an_adapter(adapter):
    from interplay.agent_specs import AgentSpec, model_of
    from interplay.backends.transformers_backend import TransformersBackend

    assert model_of(AgentSpec.parse(f"recsim:{adapter}")) == str(adapter)
    backend = TransformersBackend(str(adapter), dtype="float32")
    merged, _ = load_adapter_model(adapter, torch.float32)
    assert backend.model.config.vocab_size == merged.config.vocab_size
    for a, b in zip(backend.model.state_dict().values(), merged.state_dict().values()):
        assert torch.equal(a, b)


def test_second_stage_continues_the_adapter_and_keeps_its_base(adapter, tiny_model_dir, tmp_path):
    out = tmp_path / "stage2"
    _train(tmp_path, adapter, out, steps=5)
    assert adapter_base(out) == str(tiny_model_dir)  # the base, not the first stage's folder
    # it starts where the first stage ended, not from the base
    assert _losses(out)[0] < _losses(adapter)[0]


def test_merge_adapter_writes_a_plain_checkpoint_with_the_same_logits(adapter, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = merge_adapter(adapter, tmp_path / "merged")
    assert not is_adapter(out) and (out / "interplay_training.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    merged, _ = load_adapter_model(adapter, torch.float32)
    ids = AutoTokenizer.from_pretrained(out)("<action><inquire></action>", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, merged.eval()(ids).logits, atol=1e-5)


def test_an_adapter_whose_token_rows_do_not_match_its_base_is_refused(adapter, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(adapter, bad)
    config = json.loads((bad / ADAPTER_CONFIG).read_text())
    config["trainable_token_indices"]["embed_tokens"] = [1, 2, 3]
    (bad / ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"adapter_config.json: field trainable_token_indices"):
        load_adapter_model(bad, torch.float32)


def test_vllm_backend_refuses_an_adapter_with_the_merge_command(adapter):
    from interplay.backends.vllm_backend import VLLMBackend

    with pytest.raises(ValueError, match="merge-adapter"):
        VLLMBackend(str(adapter))


def test_bare_usersim_and_recsim_specs_use_the_shipped_adapters(adapter, tmp_path, monkeypatch):
    """'recsim' without a checkpoint is the adapter shipped in interplay/simulators/recsim; an install
    without one gets an error that says how to make it."""
    import interplay.simulators as shipped
    from interplay.agent_specs import AgentSpec, check_agent_spec, model_of

    monkeypatch.setattr(shipped, "shipped_dir", lambda role: tmp_path / "none" / role.value)
    with pytest.raises(ValueError, match="make simulators"):
        model_of(AgentSpec.parse("recsim"))
    monkeypatch.setattr(shipped, "shipped_dir", lambda role: adapter)
    assert model_of(AgentSpec.parse("recsim")) == str(adapter)
    assert check_agent_spec("recsim", Role.RECOMMENDER) == AgentSpec("recsim")
    assert check_agent_spec(f"recsim:{adapter}", Role.RECOMMENDER).arg == str(adapter)  # an adapter folder passes


def test_ship_copies_the_adapter_with_its_model_card_and_refuses_the_wrong_role(adapter, tmp_path):
    from interplay.results_docs import checkpoint_hash
    from interplay.simulators.ship import ship

    dest = ship(adapter, Role.RECOMMENDER, "interplay train --lora ...", ["MatchScore 0.5 [0.4, 0.6] (259)"],
                dest=tmp_path / "recsim")
    assert is_adapter(dest) and not any(p.is_dir() for p in dest.iterdir())  # no resumable checkpoint-N folders
    card = (dest / "README.md").read_text()
    assert checkpoint_hash(dest) in card and "MatchScore 0.5 [0.4, 0.6] (259)" in card
    assert "| 1 |" in card and "interplay train --lora ..." in card
    merged, _ = load_adapter_model(dest, torch.float32)  # the shipped copy loads on its own
    with pytest.raises(ValueError, match="config.role is 'recommender', not 'user'"):
        ship(adapter, Role.USER, "x", dest=tmp_path / "usersim")


def test_an_adapter_training_resumes_from_its_last_saved_step(tiny_model_dir, tmp_path):
    """A LoRA run stopped after its step-4 save continues from checkpoint-4 (adapter, optimizer,
    scheduler) and ends with the adapter of an uncut run; a tampered checkpoint changes the end, so
    the resumed run did read it."""
    import shutil

    from safetensors.torch import load_file, save_file

    from interplay.training.train import TrainConfig, train

    def run(out, steps, resume):
        return train(TrainConfig(dtype="fp32", role=Role.RECOMMENDER, data=str(_data(tmp_path, RECORDS[0])),
                                 out=str(out), model=str(tiny_model_dir), max_steps=steps, learning_rate=5e-3,
                                 batch_size=1, grad_accum=1, logging_steps=1, save_steps=4, report_to="none",
                                 lora=True, lora_rank=8, grounded=False), resume=resume)

    def same(a, b):
        a, b = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
        return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

    whole = tmp_path / "whole"
    run(whole, 8, False)  # saves checkpoint-4 and checkpoint-8 on the way
    cut, tampered = tmp_path / "cut", tmp_path / "tampered"
    for folder in (cut, tampered):  # as if the run had been stopped after its step-4 save
        shutil.copytree(whole / "checkpoint-4", folder / "checkpoint-4")
    weights = tampered / "checkpoint-4" / "adapter_model.safetensors"
    save_file({k: (v * 0 if "lora_B" in k else v) for k, v in load_file(weights).items()}, weights)
    run(cut, 8, True)
    run(tampered, 8, True)
    steps = [h["step"] for h in json.loads((cut / "interplay_training.json").read_text())["log_history"] if "loss" in h]
    assert steps == list(range(1, 9))  # one history: steps 1-4 from the checkpoint, 5-8 from the resumed run
    assert same(cut, whole)
    assert not same(tampered, whole)
    # the model card's time: the resumed process timed only the last 4 steps, and says so
    from interplay.simulators.ship import stage_time

    timed = lambda f: json.loads((f / "interplay_training.json").read_text())["metrics"]["train"]  # noqa: E731
    assert stage_time(timed(whole), 8) == f"{timed(whole)['train_runtime']:.0f}"
    said = stage_time(timed(cut), 8)
    assert said.startswith(f"{timed(cut)['train_runtime']:.0f} for the last 4 of 8 steps (resumed; ~"), said
