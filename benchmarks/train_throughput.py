"""Training throughput: Interplay's role-masked path against plain TRL defaults, same data, one run.

    python benchmarks/train_throughput.py [--data runs/data/redial] [--records 64] [--steps 6]

(a) TRL defaults: a dataset with pre-tokenized ``input_ids`` + ``labels`` (-100 outside the role's
    turns), TRL's own collator (padded batches), SFTConfig defaults (bf16, gradient checkpointing),
    batch 4;
(b) Interplay: the same examples through ``RoleMaskCollator`` padding-free, bf16 autocast, no
    gradient checkpointing, 4 records per optimizer step by accumulation.
Both start from the same weights and train the same records in the same order. The labels each
path produces are checked identical first. Prints real (non-pad) tokens/s after a warm-up step and
the ratio (b)/(a).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import TrainerCallback


class Clock(TrainerCallback):
    """Wall time of each optimizer step after the first."""

    def __init__(self):
        self.t0, self.times = None, []

    def on_step_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self.t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="runs/data/redial")
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--role", default="recommender")
    args = ap.parse_args()

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from interplay.data.build import read_records
    from interplay.protocol import Role
    from interplay.training.collator import RoleMaskCollator
    from interplay.training.tokenize import tokenize_record
    from interplay.training.train import load_model_and_tokenizer

    role = Role(args.role)
    torch.set_num_threads(torch.get_num_threads())
    lm, tok = load_model_and_tokenizer(None, bf16_weights=False)
    init = {k: v.clone() for k, v in lm.state_dict().items()}
    feats = [ex for r in read_records(args.data, "train")[: args.records]
             for ex in tokenize_record(r, tok, role, max_length=1024)]
    ours = RoleMaskCollator(role, tok.pad_token_id, padding_free=True)
    rows = [{"input_ids": f["input_ids"], "labels": ours.labels_for(f["input_ids"], f["token_roles"])} for f in feats]
    n_steps = args.steps + 1
    per_step = 4
    rows = rows[: n_steps * per_step]
    tokens_per_step = [sum(len(r["input_ids"]) for r in rows[i * per_step:(i + 1) * per_step]) for i in range(n_steps)]
    real_tokens = sum(tokens_per_step[1:])

    def run(name: str, trainer_kwargs: dict, config_kwargs: dict) -> float:
        lm.load_state_dict(init)
        clock = Clock()
        cfg = SFTConfig(output_dir=f"/tmp/bench-{name}", max_steps=n_steps, learning_rate=1e-5, report_to="none",
                        save_strategy="no", logging_steps=1000, use_cpu=True, seed=0, disable_tqdm=True,
                        **config_kwargs)
        trainer = SFTTrainer(model=lm, args=cfg, train_dataset=Dataset.from_list(trainer_kwargs.pop("rows")),
                             processing_class=tok, callbacks=[clock], **trainer_kwargs)
        trainer.train()
        return real_tokens / sum(clock.times[1:])

    # masks identical: TRL's collator on (a)'s rows vs ours on the features
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trl_batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(
        [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows[:4]])
    ours_batch = ours(feats[:4])
    trl_labels = [l for row in trl_batch["labels"].tolist() for l in row if l != -100]
    our_labels = [l for l in ours_batch["labels"][0].tolist() if l != -100]
    same = trl_labels == our_labels
    print(f"masks identical: {same} ({len(our_labels)} labelled tokens in the first batch)")
    if not same:
        raise SystemExit("masks differ: not comparing speeds")

    a = run("trl-defaults", {"rows": rows}, dict(per_device_train_batch_size=per_step, max_length=None))
    b = run("interplay", {"rows": feats[: n_steps * per_step], "data_collator": ours},
            dict(per_device_train_batch_size=1, gradient_accumulation_steps=per_step, bf16=True,
                 gradient_checkpointing=False, max_length=None, dataset_kwargs={"skip_prepare_dataset": True},
                 remove_unused_columns=False))
    print(f"{len(rows)} examples, {real_tokens} real tokens timed over {args.steps} steps, {torch.get_num_threads()} threads")
    print(f"(a) TRL defaults, padded batches : {a:8.1f} tokens/s")
    print(f"(b) Interplay, padding-free      : {b:8.1f} tokens/s")
    print(f"ratio (b)/(a): {b / a:.2f}x")


if __name__ == "__main__":
    main()
