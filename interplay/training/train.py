"""``interplay train``: role-masked SFT of a user or recommender simulator with TRL's SFTTrainer."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interplay.protocol import Role

TRAINING_CONFIG = "interplay_training.json"


@dataclass
class TrainConfig:
    """Settings of one training run (saved beside the checkpoint)."""

    role: Role = field(metadata={"help": "which simulator: user (UserSim) or recommender (RecSim)"})
    data: str = field(metadata={"help": "a folder from 'interplay data build' (train.jsonl, valid.jsonl)"})
    out: str = field(metadata={"help": "checkpoint folder"})
    model: str | None = field(default=None, metadata={"help": "HF id or path of a causal LM (default: offline SmolLM2-135M)"})
    epochs: float = field(default=2.0, metadata={"help": "epochs (the paper: 2)"})
    learning_rate: float | None = field(default=None, metadata={
        "help": "learning rate (default 2e-4, the paper's LoRA rate, measured fine for full FT of 135M here; use "
                "~1e-5 for full fine-tuning of 8B models)"})
    batch_size: int = field(default=4, metadata={"help": "records per micro-batch", "min": 1})
    grad_accum: int = field(default=4, metadata={"help": "micro-batches per optimizer step (effective batch 16, as "
                                                         "in the paper)", "min": 1})
    max_length: int = field(default=1024, metadata={"help": "tokens per example; longer dialogues are windowed", "min": 16})
    dtype: str = field(default="auto", metadata={
        "help": "auto: bf16 where the hardware has native bfloat16 (a GPU that supports it, a CPU with "
                "avx512_bf16 / amx_bf16), else fp32 (said at start); bf16: bf16 autocast over fp32 master weights "
                "(with --lora, bf16 weights); fp32"})
    lora: bool = field(default=False, metadata={
        "help": "LoRA (peft) instead of full fine-tuning: OUT is a small adapter folder (the added tokens' rows trained "
                "as PEFT trainable token rows) that loads onto its base model; a --model that is an adapter folder "
                "continues that adapter (a second stage)"})
    lora_merge: bool = field(default=False, metadata={
        "help": "with --lora: merge the adapter into a full checkpoint instead (for backends that cannot load "
                "adapters, e.g. vLLM)"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank", "min": 1})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha", "min": 1})
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                    metadata={"help": "comma-separated module names"})
    padding_free: bool = field(default=True, metadata={"help": "flattened batches with position_ids (faster) vs padded"})
    recommender_sees_persona: bool = field(default=False, metadata={"help": "RecSim header includes the persona"})
    grounded: bool = field(default=True, metadata={
        "help": "UserSim reads the catalogue facts of each recommended item (interplay.grounding), as a grounded "
                "run shows them; needs DATA/catalogue.jsonl. No effect on RecSim"})
    grounding_match: bool = field(default=False, metadata={
        "help": "UserSim, grounded: each item's facts also say how many of its target attributes the item shows "
                "('Matches 2 of your 6 wishes')"})
    action_loss_weight: float = field(default=1.0, metadata={
        "help": "decision-aware recipe: loss weight of the action tags (<accept>, <feedback>, ...) vs 1 for other "
                "tokens", "min": 0.0})
    counterfactual_negatives: float = field(default=0.0, metadata={
        "help": "decision-aware recipe (UserSim): share of train records that also give a counterfactual negative "
                "(a recommendation swapped for a contradicting item, rejected)", "min": 0.0, "max": 1.0})
    rejections: str = field(default="templates", metadata={
        "help": "the counterfactual negatives' rejection texts: 'templates' (three sentences naming the user's "
                "wishes) or 'people' (what ReDial's seekers wrote after a recommendation they rejected, from the "
                "data's whole train split)"})
    decision_examples: int = field(default=0, metadata={
        "help": "decision-aware recipe (UserSim): N short copies per recommendation the user answers (the turn "
                "before it, the recommendation, the answer), so training spends its tokens on the decision",
        "min": 0})
    whole_dialogues: bool = field(default=True, metadata={
        "help": "train on the whole dialogues' windows; --no-whole-dialogues with --decision-examples trains on "
                "the decision examples (and negatives) alone, e.g. as a second stage from a checkpoint (--model)"})
    recommender_candidates: int = field(default=0, metadata={
        "help": "RecSim: show K catalogue candidates retrieved from the conversation before each of its turns "
                "(needs the MatchScore encoder); 0: the paper's setup", "min": 0})
    prompt_layout: int = field(default=2, metadata={
        "help": "header layout (interplay.training.serialize.PROMPT_LAYOUTS): 2 the role's brief (task, actions) "
                "first, shared by every episode, then persona and target; 1 the layout of checkpoints from before "
                "(persona first)", "min": 1, "max": 2})
    max_train_records: int = field(default=0, metadata={
        "help": "train on the first N train records only (0: all), e.g. to compare corpora at the same size",
        "min": 0})
    max_steps: int = field(default=-1, metadata={"help": "stop after N optimizer steps (-1: by epochs)"})
    seed: int = field(default=0, metadata={"help": "seed"})
    report_to: str = field(default="auto", metadata={"help": "auto (tensorboard when installed) | none | tensorboard | wandb"})
    logging_steps: int = field(default=10, metadata={"help": "log the training loss every N steps", "min": 1})
    eval_steps: int = field(default=0, metadata={"help": "evaluate on valid every N steps (0: once per epoch)", "min": 0})
    save_steps: int = field(default=0, metadata={"help": "save a resumable checkpoint every N steps (0: once per "
                                                         "epoch)", "min": 0})

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else 2e-4


def build_dataset(records, tokenizer, cfg: TrainConfig, grounding=None, candidates=None):
    """HF Dataset of the tokenized windows of ``records`` for ``cfg.role`` (``grounding``: the
    catalogue a grounded user's facts come from; ``candidates``: (retriever, k) for RecSim)."""
    from datasets import Dataset

    from interplay.training.tokenize import tokenize_record

    rows = [ex for r in records for ex in tokenize_record(r, tokenizer, cfg.role, cfg.max_length,
                                                          cfg.recommender_sees_persona, grounding, candidates,
                                                          cfg.grounding_match, cfg.prompt_layout)]
    if not rows:
        raise ValueError(f"no training example for the {cfg.role.value} in {cfg.data}")
    return Dataset.from_list(rows)


def load_model_and_tokenizer(model: str | None, bf16_weights: bool):
    """The model (bf16 weights only when asked: LoRA on a GPU; full fine-tuning keeps fp32 master
    weights and trains under bf16 autocast) and its tokenizer, both with the added tokens. An
    adapter folder is merged into its base first (full fine-tuning from an adapter)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interplay.backends.default_model import resolve_model_path
    from interplay.backends.adapters import is_adapter, load_adapter_model
    from interplay.training.tokenize import add_special_tokens

    dtype = torch.bfloat16 if bf16_weights else torch.float32
    if is_adapter(model):
        lm, tok = load_adapter_model(model, dtype)
    else:
        path = resolve_model_path(model)
        tok = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    add_special_tokens(tok, lm)
    # transformers keeps packed (padding-free) sequences apart only when no KV cache exists; with
    # use_cache on, the forward pass makes one and attention silently crosses records
    lm.config.use_cache = False
    return lm, tok


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train, save the checkpoint (model, tokenizer with the added tokens, config), return metrics.

    ``resume``: continue from the newest ``checkpoint-N`` in ``cfg.out`` (model, optimizer,
    scheduler, data order), or start afresh when there is none yet, so one command both starts
    and continues a long run."""
    import importlib.util

    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from interplay.data.build import read_catalogue, read_records
    from interplay.training.collator import RoleMaskCollator

    grounding = catalogue = None
    with_cands = cfg.role is Role.RECOMMENDER and cfg.recommender_candidates > 0
    needs_catalogue = with_cands or (cfg.role is Role.USER and (cfg.grounded or cfg.counterfactual_negatives > 0))
    if needs_catalogue:
        if not (Path(cfg.data) / "catalogue.jsonl").exists():
            raise ValueError(f"{cfg.data}: grounding, counterfactual negatives and candidates need catalogue.jsonl "
                             "(or train with --no-grounded, no --counterfactual-negatives, no --recommender-candidates)")
        catalogue = read_catalogue(cfg.data)
        grounding = catalogue if cfg.grounded and cfg.role is Role.USER else None
    candidates = None
    if with_cands:
        from interplay.candidates import CandidateRetriever

        candidates = (CandidateRetriever.for_data(cfg.data, catalogue), cfg.recommender_candidates)
    from interplay.training.dtype import choose_dtype

    dtype, why = choose_dtype(cfg.dtype)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"training dtype: {dtype} ({why})", flush=True)
    bf16 = dtype == "bf16"
    from interplay.backends.adapters import added_token_ids, is_adapter, load_adapter_for_training, lora_config

    lora_base = cfg.model  # what an adapter is recorded to load onto
    if cfg.lora and is_adapter(cfg.model):  # a later stage of the same adapter
        import torch

        lm, tok, lora_base = load_adapter_for_training(cfg.model, torch.bfloat16 if bf16 else torch.float32)
        lm.config.use_cache = False
    else:
        lm, tok = load_model_and_tokenizer(cfg.model, bf16_weights=bf16 and cfg.lora)
    train_records = read_records(cfg.data, "train")
    if cfg.max_train_records:
        train_records = train_records[: cfg.max_train_records]
    negatives = []
    if cfg.role is Role.USER and cfg.counterfactual_negatives > 0:
        from interplay.training.counterfactual import counterfactual_negatives

        from interplay.training.counterfactual import people_rejections

        if cfg.rejections not in ("templates", "people"):
            raise ValueError(f"rejections {cfg.rejections!r}: choose templates or people")
        pool = people_rejections(read_records(cfg.data, "train")) if cfg.rejections == "people" else None
        if pool is not None and not pool:
            raise ValueError(f"{cfg.data}/train.jsonl: no rejection in people's words (no user feedback turn after a "
                             "recommendation its seeker rejected); use --rejections templates")
        negatives = counterfactual_negatives(train_records, catalogue, cfg.counterfactual_negatives, cfg.seed,
                                             rejections=pool)
    decisions = []
    if cfg.role is Role.USER and cfg.decision_examples > 0:
        from interplay.training.decision_examples import decision_examples

        decisions = decision_examples(train_records + negatives, cfg.decision_examples)
    if not cfg.whole_dialogues and not decisions:
        raise ValueError("--no-whole-dialogues leaves nothing to train on without --decision-examples N (a UserSim)")
    base = train_records + negatives if cfg.whole_dialogues else []
    train_ds = build_dataset(base + decisions, tok, cfg, grounding, candidates)
    valid_path = Path(cfg.data) / "valid.jsonl"
    valid_ds = build_dataset(read_records(cfg.data, "valid"), tok, cfg, grounding, candidates) \
        if valid_path.exists() else None
    peft_config = None
    if cfg.lora and not is_adapter(cfg.model):
        # the new tokens need trained rows: PEFT trainable token rows (tied to the output layer), not a
        # full copy of the embedding
        peft_config = lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, added_token_ids(tok))
    report_to = cfg.report_to
    if report_to == "auto":
        report_to = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    args = SFTConfig(
        output_dir=cfg.out, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        bf16=bf16, fp16=False, gradient_checkpointing=False, max_length=None, seed=cfg.seed,
        dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False,
        eval_strategy="no" if valid_ds is None else ("steps" if cfg.eval_steps else "epoch"),
        eval_steps=cfg.eval_steps or None, save_strategy="steps" if cfg.save_steps else "epoch", save_steps=cfg.save_steps or None,
        save_total_limit=2,
        logging_steps=cfg.logging_steps, report_to=report_to, use_cpu=not _cuda(), disable_tqdm=False,
        lr_scheduler_type="cosine", warmup_steps=0.03,
    )
    # padding-free: each micro-batch of batch_size records is flattened into one row (no padding)
    from interplay.protocol import Action

    collator = RoleMaskCollator(cfg.role, tok.pad_token_id, padding_free=cfg.padding_free,
                                action_ids=frozenset(tok.convert_tokens_to_ids([f"<{a.value}>" for a in Action])),
                                action_weight=cfg.action_loss_weight)
    trainer = _weighted_trainer(SFTTrainer)(model=lm, args=args, train_dataset=train_ds, eval_dataset=valid_ds,
                         processing_class=tok, data_collator=collator, peft_config=peft_config)
    if cfg.lora and trainer.is_fsdp_enabled:
        raise ValueError("LoRA under FSDP is not supported here: launch LoRA with the DDP config "
                         "(experiments/accelerate/ddp_4gpu_lora.yaml), FSDP for full fine-tuning")
    last = get_last_checkpoint(cfg.out) if resume and Path(cfg.out).is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    model = trainer.model
    adapter = cfg.lora and not cfg.lora_merge
    if cfg.lora and cfg.lora_merge:
        model = model.merge_and_unload()
    model.config.use_cache = True  # for generation
    main = trainer.is_world_process_zero()  # under accelerate/torchrun: rank 0 writes the checkpoint
    if trainer.is_fsdp_enabled:
        trainer.save_model(cfg.out)  # every rank takes part in gathering the sharded weights
    elif main and adapter:
        from interplay.backends.adapters import save_adapter

        save_adapter(model, tok, cfg.out, lora_base)
    elif main:
        model.save_pretrained(cfg.out)
    history = [h for h in trainer.state.log_history]
    metrics = {"train": result.metrics, "valid_loss": [h["eval_loss"] for h in history if "eval_loss" in h],
               "train_records": len(train_records), "train_examples": len(train_ds), "counterfactual_negatives": len(negatives),
               "decision_examples": len(decisions), "valid_examples": len(valid_ds) if valid_ds is not None else 0,
               "world_size": trainer.args.world_size, "dtype": dtype, "dtype_reason": why}
    if metrics["valid_loss"]:
        metrics["valid_ppl"] = [math.exp(x) for x in metrics["valid_loss"]]
    if main:
        if not adapter:
            tok.save_pretrained(cfg.out)
        (Path(cfg.out) / TRAINING_CONFIG).write_text(
            json.dumps({"config": {**asdict(cfg), "role": cfg.role.value, "lr": cfg.lr}, "metrics": metrics,
                        "log_history": history}, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    return metrics


def weighted_lm_loss(logits, labels, weights, num_items=None):
    """Causal-LM loss with per-token weights: sum over labelled positions of weight x
    cross-entropy of the next token, divided by ``num_items`` (the labelled tokens of the whole
    accumulated batch, as transformers normalises its own loss) or by this batch's count. With
    all weights 1 it equals the model's own loss."""
    import torch.nn.functional as F

    logits, target, w = logits[:, :-1].float(), labels[:, 1:], weights[:, 1:].to(logits.device)
    ce = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
    return (ce * w).sum() / (num_items if num_items is not None else (target != -100).sum())


def _weighted_trainer(base):
    """``base`` (SFTTrainer) computing the loss with the collator's ``loss_weights`` when present."""

    import torch

    class WeightedLossTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weights = inputs.pop("loss_weights", None)
            if weights is None and not _has_token_rows(model):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            labels = inputs.pop("labels")
            if weights is None:  # PEFT token rows: TRL's fused head reads the base weight and misses them
                weights = torch.ones_like(labels, dtype=torch.float32)
            outputs = model(**inputs)
            loss = weighted_lm_loss(outputs.logits, labels, weights, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return WeightedLossTrainer


def _has_token_rows(model) -> bool:
    """Whether ``model`` (a PEFT model) trains token rows: its output layer is then a PEFT wrapper
    that TRL's fused LM-head loss would bypass (it reads ``lm_head.weight``)."""
    from peft import PeftModel

    return isinstance(model, PeftModel) and any("trainable_tokens" in n for n, _ in model.named_parameters())


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
