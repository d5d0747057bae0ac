"""Role-masked SFT: exact masks (padded and padding-free), windowing, TRL training, checkpoint round trip."""

import json

import pytest
import torch
from transformers import AutoTokenizer

from interplay.data.pearl import load_pearl
from interplay.data.schema import DialogueRecord, RecordTurn
from interplay.episode import HistoryTurn, Observation
from interplay.protocol import Action, Role, Turn, format_turn
from interplay.simulation_data import load_demo
from interplay.training.collator import RoleMaskCollator
from interplay.training.serialize import END, SPEAKER, inference_prompt, segments
from interplay.training.serialize import header as user_header
from interplay.training.tokenize import add_special_tokens, record_view, tokenize_record
from conftest import ROOT

RECORDS = list(load_pearl(ROOT / "tests" / "fixtures" / "pearl_sample.jsonl", load_demo().catalogue,
                          on_error=lambda e: None))


def labelled_spans(batch: dict, row: int = 0) -> list[list[int]]:
    """Runs of consecutive labelled token ids in one row of a collated batch."""
    spans, cur = [], []
    for tok_id, label in zip(batch["input_ids"][row].tolist(), batch["labels"][row].tolist()):
        if label != -100:
            assert label == tok_id
            cur.append(label)
        elif cur:
            spans.append(cur)
            cur = []
    return spans + ([cur] if cur else [])


def expected_spans(record: DialogueRecord, role: Role, tok) -> list[list[int]]:
    return [tok(format_turn(Turn(t.action, t.text)) + END, add_special_tokens=False)["input_ids"]
            for t in record.turns if t.role is role]


def check_masks(records, tok, padding_free: bool) -> int:
    checked = 0
    for role in Role:
        feats = [ex for r in records for ex in tokenize_record(r, tok, role, max_length=4096)]
        batch = RoleMaskCollator(role, tok.pad_token_id, padding_free=padding_free)(feats)
        if padding_free:
            assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
            starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0]
            assert starts == [0] + list(torch.tensor([len(f["input_ids"]) for f in feats]).cumsum(0)[:-1].tolist())
            got = labelled_spans(batch)
        else:
            assert batch["input_ids"].shape[0] == len(feats)
            got = [s for row in range(len(feats)) for s in labelled_spans(batch, row)]
            pad = batch["attention_mask"] == 0
            assert (batch["labels"][pad] == -100).all()
        want = [s for r in records for s in expected_spans(r, role, tok)]
        assert got == want, role  # every turn of the role, token for token, nothing else
        checked += len(want)
    return checked


@pytest.mark.parametrize("padding_free", [True, False])
def test_masks_on_fixture_records(tokenizer, padding_free):
    assert check_masks(RECORDS, tokenizer, padding_free) >= 10


@pytest.mark.parametrize("padding_free", [True, False])
def test_masks_on_real_redial_records(tokenizer, shared_data, tmp_path, padding_free):
    from interplay.data.build import build_dataset, read_records

    build_dataset("redial", shared_data / "redial" / "valid_data.jsonl", tmp_path / "d", shared_data, progress=False)
    records = read_records(tmp_path / "d", "valid")[:25]
    assert check_masks(records, tokenizer, padding_free) > 100


def test_end_of_turn_is_trained_although_pad_equals_eos(tokenizer):
    ex = tokenize_record(RECORDS[0], tokenizer, Role.RECOMMENDER)[0]
    batch = RoleMaskCollator(Role.RECOMMENDER, tokenizer.pad_token_id, padding_free=False)([ex, ex])
    end_id = tokenizer.convert_tokens_to_ids(END)
    assert (batch["labels"] == end_id).sum() == 2 * sum(t.role is Role.RECOMMENDER for t in RECORDS[0].turns)


def test_serialisation_is_shared_by_training_and_inference(tokenizer):
    rec = RECORDS[0]
    k = max(i for i, t in enumerate(rec.turns) if t.role is Role.RECOMMENDER)
    history = [HistoryTurn(role=t.role, action=t.action, text=t.text) for t in rec.turns[:k]]
    prompt_ids = tokenizer(inference_prompt(Role.RECOMMENDER, record_view(rec, Role.RECOMMENDER), history),
                           add_special_tokens=False)["input_ids"]
    train_ids = tokenize_record(rec, tokenizer, Role.RECOMMENDER)[0]["input_ids"]
    assert train_ids[: len(prompt_ids)] == prompt_ids  # the prompt is a prefix of the training example
    assert prompt_ids[-1] == tokenizer.convert_tokens_to_ids(SPEAKER[Role.RECOMMENDER])
    whole = "".join(s.text for s in segments(Role.USER, record_view(rec, Role.USER), history))
    assert tokenizer(whole, add_special_tokens=False)["input_ids"] == tokenize_record(
        rec.model_copy(update={"turns": rec.turns[:k]}), tokenizer, Role.USER)[0]["input_ids"]


def test_user_header_has_attributes_never_the_title(tokenizer):
    ids = tokenize_record(RECORDS[0], tokenizer, Role.USER)[0]["input_ids"]
    header = tokenizer.decode(ids[: ids.index(tokenizer.convert_tokens_to_ids(END)) + 1])
    assert "Inside Man" not in header
    # the target's review without its sentence naming the title ("Inside Man keeps you guessing.")
    assert header.endswith("\nWants: A clever bank robbery turns into a hostage standoff. Smart and stylish.<|end|>")
    # without a review, the attribute list (the title is none of them)
    view = record_view(RECORDS[0], Role.USER).model_copy(update={"target_attribute_text": ""})
    listed = user_header(Role.USER, view)
    assert listed.endswith("\nWants: crime, thriller, spike lee, denzel washington, clive owen, jodie foster")
    assert "inside man" not in listed.lower()
    rec_header = tokenizer.decode(tokenize_record(RECORDS[0], tokenizer, Role.RECOMMENDER)[0]["input_ids"][:40])
    assert "hostage" not in rec_header and "Preferences" not in rec_header


def test_long_dialogue_is_windowed_not_dropped(tokenizer):
    base = RECORDS[0]
    turns = []
    for i in range(30):
        turns.append(RecordTurn(role=Role.USER, action=Action.FEEDBACK, text=f"User remark number {i} about films."))
        turns.append(RecordTurn(role=Role.RECOMMENDER, action=Action.INQUIRE, text=f"Question {i}: what else do you like?"))
    long = base.model_copy(update={"turns": turns, "outcome": base.outcome.model_copy(update={"accepted_item": None})})
    for role in Role:  # the user's header (layout 2: the role's brief first) is 165 tokens
        windows = tokenize_record(long, tokenizer, role, max_length=200)
        assert len(windows) > 3 and all(len(w["input_ids"]) <= 200 for w in windows)
        batch = RoleMaskCollator(role, tokenizer.pad_token_id)(windows)
        trained = {tuple(s) for s in labelled_spans(batch)}
        assert trained == {tuple(s) for s in expected_spans(long, role, tokenizer)}  # every turn, in some window
        header_len = tokenize_record(long, tokenizer, role, max_length=4096)[0]["input_ids"].index(
            tokenizer.convert_tokens_to_ids(END)) + 1
        assert all(w["input_ids"][:header_len] == windows[0]["input_ids"][:header_len] for w in windows)


def test_padding_free_loss_equals_padded_loss(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    feats = [ex for r in RECORDS for ex in tokenize_record(r, tokenizer, Role.USER)]
    flat_batch = RoleMaskCollator(Role.USER, tokenizer.pad_token_id, True)(feats)
    padded_batch = RoleMaskCollator(Role.USER, tokenizer.pad_token_id, False)(feats)
    with torch.no_grad():
        # the pitfall train() avoids: with a KV cache, transformers does not separate packed records
        leaky = model(**flat_batch, use_cache=True).loss
        model.config.use_cache = False  # as train() sets it
        flat, padded = model(**flat_batch).loss, model(**padded_batch).loss
    assert torch.isclose(flat, padded, atol=1e-5), (flat, padded)  # no attention across records
    assert not torch.isclose(leaky, padded, atol=1e-4)


@pytest.fixture(scope="module")
def overfit_checkpoint(tmp_path_factory):
    """A 2-layer model trained (through `interplay train`'s code path) on one dialogue until it
    reproduces the recommender's turns."""
    from transformers import AutoTokenizer as AT
    from transformers import LlamaConfig, LlamaForCausalLM

    from interplay.backends.default_model import default_model_path
    from interplay.training.train import TrainConfig, train

    base, data = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("one")
    tok = AT.from_pretrained(default_model_path())
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(base)
    tok.save_pretrained(base)
    (data / "train.jsonl").write_text(RECORDS[0].model_dump_json() + "\n")
    (data / "valid.jsonl").write_text(RECORDS[0].model_dump_json() + "\n")
    out = tmp_path_factory.mktemp("ckpt")
    metrics = train(TrainConfig(dtype="fp32", role=Role.RECOMMENDER, data=str(data), out=str(out), model=str(base), max_steps=100,
                                learning_rate=3e-3, batch_size=1, grad_accum=1, logging_steps=10, report_to="none"))
    return out, metrics


def test_training_lowers_loss_and_saves_everything(overfit_checkpoint):
    out, metrics = overfit_checkpoint
    saved = json.loads((out / "interplay_training.json").read_text())
    losses = [h["loss"] for h in saved["log_history"] if "loss" in h]
    assert losses[-1] < losses[0] / 4
    assert saved["config"]["role"] == "recommender" and saved["config"]["lr"] == 3e-3
    assert metrics["valid_loss"][-1] < 1.0
    tok = AutoTokenizer.from_pretrained(out)
    assert all(tok.convert_tokens_to_ids(t) != tok.unk_token_id for t in ("<recommend>", "<|end|>", "</movie_title>"))


def test_checkpoint_round_trip_as_agent(overfit_checkpoint):
    from agents.llm import FineTunedRecommenderSimulator
    from interplay.agent_specs import AgentSpec, model_of
    from interplay.backends.transformers_backend import TransformersBackend

    out, _ = overfit_checkpoint
    assert model_of(AgentSpec.parse(f"recsim:{out}")) == str(out)
    backend = TransformersBackend(str(out), dtype="float32")
    agent = FineTunedRecommenderSimulator(backend, backend.tokenizer)
    rec = RECORDS[0]
    agent.reset(record_view(rec, Role.RECOMMENDER))
    for k, gold in enumerate(rec.turns):
        if gold.role is Role.RECOMMENDER:
            obs = Observation(history=[HistoryTurn(role=t.role, action=t.action, text=t.text) for t in rec.turns[:k]],
                              turn_index=k)
            turn = agent.act(obs)  # parsed by the protocol; raises ProtocolError otherwise
            assert (turn.action, turn.text) == (gold.action, gold.text)


def test_lora_merge_training_writes_a_plain_checkpoint(overfit_checkpoint, tmp_path):
    """LoRA (peft) with --lora-merge: merged at save time into a plain checkpoint (tests/test_adapters.py
    covers the adapter folders --lora writes by default)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer as AT

    from interplay.training.train import TrainConfig, train

    base_ckpt, _ = overfit_checkpoint  # any small checkpoint with the added tokens will do as a base
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text(RECORDS[1].model_dump_json() + "\n")
    out = tmp_path / "lora"
    train(TrainConfig(dtype="fp32", role=Role.USER, data=str(data), out=str(out), model=str(base_ckpt), max_steps=12,
                      learning_rate=3e-3, batch_size=1, grad_accum=1, logging_steps=4, report_to="none",
                      lora=True, lora_merge=True, lora_rank=8, grounded=False))
    saved = json.loads((out / "interplay_training.json").read_text())
    losses = [h["loss"] for h in saved["log_history"] if "loss" in h]
    assert losses[-1] < losses[0] and saved["config"]["lora"] is True
    model = AutoModelForCausalLM.from_pretrained(out)  # a plain model: no adapter files needed
    assert not (out / "adapter_config.json").exists()
    assert model.get_input_embeddings().weight.shape[0] >= len(AT.from_pretrained(out))


def test_max_train_records_trains_on_the_first_records_only(overfit_checkpoint, tmp_path):
    """A same-size comparison of corpora: --max-train-records N keeps the first N train records,
    and the training record says how many were used."""
    from interplay.checkpoint_info import agent_training
    from interplay.training.train import TrainConfig, train

    base_ckpt, _ = overfit_checkpoint
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in RECORDS[:2]))
    (data / "build.json").write_text(json.dumps({"source": "redial", "records": {"train": 2}}))
    out = tmp_path / "one"
    metrics = train(TrainConfig(dtype="fp32", role=Role.RECOMMENDER, data=str(data), out=str(out), model=str(base_ckpt), max_steps=1,
                                batch_size=1, grad_accum=1, report_to="none", max_train_records=1))
    both = train(TrainConfig(dtype="fp32", role=Role.RECOMMENDER, data=str(data), out=str(tmp_path / "two"), model=str(base_ckpt),
                             max_steps=1, batch_size=1, grad_accum=1, report_to="none"))
    assert metrics["train_records"] == 1 and both["train_records"] == 2
    assert metrics["train_examples"] < both["train_examples"]
    assert agent_training(f"recsim:{out}")["train_records"] == 1
    assert agent_training(f"recsim:{tmp_path / 'two'}")["train_records"] == 2


def test_new_token_embeddings_start_from_their_spelling(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pieces = tok("<action>", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1  # spelled out before it is added
    expected = model.get_input_embeddings().weight[pieces].mean(0).detach().clone()
    add_special_tokens(tok, model)
    new_id = tok.convert_tokens_to_ids("<action>")
    row = model.get_input_embeddings().weight[new_id]
    assert torch.allclose(row, expected, atol=1e-6)
    # distinct spellings, distinct starting rows (the vocabulary mean would make them all equal)
    other = model.get_input_embeddings().weight[tok.convert_tokens_to_ids("<recommend>")]
    assert not torch.allclose(row, other)


def test_resume_mid_epoch_continues_to_the_same_weights(overfit_checkpoint, tmp_path):
    """A run stopped after a step checkpoint and resumed ends where the uninterrupted run ends."""
    import shutil

    from safetensors.torch import load_file, save_file

    from interplay.training.train import TrainConfig, train

    base_ckpt, _ = overfit_checkpoint
    data = tmp_path / "d"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in RECORDS[:2]))

    def cfg(out):
        return TrainConfig(dtype="fp32", role=Role.USER, data=str(data), out=str(out), model=str(base_ckpt), max_steps=6,
                           save_steps=3, learning_rate=1e-3, batch_size=1, grad_accum=1, report_to="none",
                           grounded=False)

    whole = tmp_path / "whole"
    train(cfg(whole), resume=True)  # --resume on an empty folder starts afresh
    assert sorted(p.name for p in whole.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    a = load_file(whole / "model.safetensors")
    for name, shift in (("cut", 0.0), ("shifted", 0.01)):
        cut = tmp_path / name
        shutil.copytree(whole / "checkpoint-3", cut / "checkpoint-3")  # as if stopped during steps 4-6
        if shift:  # proves the resumed run starts from checkpoint-3's weights, not from the base model
            weights = {k: v + shift for k, v in load_file(cut / "checkpoint-3" / "model.safetensors").items()}
            save_file(weights, cut / "checkpoint-3" / "model.safetensors", metadata={"format": "pt"})
        train(cfg(cut), resume=True)
        b = load_file(cut / "model.safetensors")
        assert a.keys() == b.keys()
        same = all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
        assert same is (not shift), name


def test_training_dtype_follows_what_the_hardware_supports(tmp_path):
    """auto: bf16 only where it is native (a GPU that supports it; a CPU with avx512_bf16 or amx_bf16,
    read from /proc/cpuinfo), fp32 elsewhere (an AVX2 CPU emulates bf16, ~10x slower); an explicit
    choice is kept; anything else is refused."""
    from interplay.training.dtype import choose_dtype, cpu_flags

    zen3 = tmp_path / "zen3"
    zen3.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n")
    sapphire = tmp_path / "spr"
    sapphire.write_text("processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert cpu_flags(zen3) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert choose_dtype("auto", cuda=False, flags=cpu_flags(zen3))[0] == "fp32"
    dtype, why = choose_dtype("auto", cuda=False, flags=cpu_flags(sapphire))
    assert dtype == "bf16" and "amx_bf16" in why and "avx512_bf16" in why
    assert choose_dtype("auto", cuda=True, cuda_bf16=True) == ("bf16", "the GPU supports bfloat16")
    assert choose_dtype("auto", cuda=True, cuda_bf16=False)[0] == "fp32"
    assert choose_dtype("bf16", cuda=False, flags=cpu_flags(zen3)) == ("bf16", "asked for")
    assert choose_dtype("fp32", cuda=True, cuda_bf16=True) == ("fp32", "asked for")
    with pytest.raises(ValueError, match="choose from auto, bf16, fp32"):
        choose_dtype("fp16")
