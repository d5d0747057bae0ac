"""Training step time: LoRA adapter against full fine-tuning, same records, same order, one run.

    python benchmarks/lora_vs_full.py --data data/redial --role user --steps 4 \
        --results-json docs/results/lora-vs-full-steps.json

Each configuration trains ``--steps`` optimizer steps through ``interplay train``'s own code path
(role masks, padding-free batches of 4 records, 2 accumulated micro-batches, dtype by hardware)
from the default model, on the first train records of ``--data``; the table gives seconds per step
(the first step's warm-up included in both), the training loss of each step and the adapter's or
checkpoint's size. Run it with nothing else heavy on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONFIGS = [("full fine-tuning, lr 2e-4", dict(lora=False, learning_rate=2e-4)),
           ("LoRA r16 q,k,v,o + token rows, lr 1e-3", dict(lora=True, learning_rate=1e-3)),
           ("LoRA r16 all linear + token rows, lr 1e-3 (shipped)", dict(lora=True, learning_rate=1e-3,
                                                                     lora_targets=ALL_LINEAR))]


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.suffix == ".safetensors") / 1e6


def measure(data: str, role: str, steps: int) -> list[dict]:
    from interplay.protocol import Role
    from interplay.training.train import TrainConfig, train

    rows = []
    for label, kw in CONFIGS:
        with tempfile.TemporaryDirectory(prefix="lora_vs_full_") as tmp:
            m = train(TrainConfig(role=Role(role), data=data, out=tmp, max_steps=steps, batch_size=4, grad_accum=2,
                                  logging_steps=1, report_to="none", save_steps=10**6, eval_steps=10**6, grounding_match=role == "user",
                                  max_train_records=8 * steps, **kw))
            record = json.loads((Path(tmp) / "interplay_training.json").read_text())
            losses = [round(h["loss"], 3) for h in record["log_history"] if "loss" in h]
            rows.append({"config": label, "s_per_step": m["train"]["train_runtime"] / steps,
                         "first_loss": losses[0], "last_loss": losses[-1], "weights_mb": folder_mb(Path(tmp)),
                         "dtype": m["dtype"], "checkpoint": "-", "threshold": None})
        print(rows[-1], "losses", losses)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/redial")
    ap.add_argument("--role", default="user", choices=["user", "recommender"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--results-json", help="write the docs result file (interplay.results_docs) here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rows = measure(args.data, args.role, args.steps)
    full = rows[0]["s_per_step"]
    for r in rows:
        r["speedup"] = full / r["s_per_step"]
    if args.results_json:
        from interplay.results_docs import Column, ResultTable

        cmd = (f"python benchmarks/lora_vs_full.py --data {args.data} --role {args.role} --steps {args.steps} "
               f"--results-json {args.results_json}")
        table = ResultTable(
            title=f"Training step time, {args.role} role: LoRA adapter vs full fine-tuning", command=cmd,
            data=args.data, split="train", source="interplay.training.train (no run folder kept)",
            measured=dt.date.today(),
            columns=[Column(key="config", header="configuration"),
                     Column(key="s_per_step", header="s / step", format=".1f"),
                     Column(key="speedup", header="vs full", format=".2f"),
                     Column(key="first_loss", header="loss step 1", format=".3f"),
                     Column(key="last_loss", header=f"loss step {args.steps}", format=".3f"),
                     Column(key="weights_mb", header="saved weights (MB)", format=".1f"),
                     Column(key="dtype", header="dtype")],
            rows=rows,
            notes=[f"{args.steps} optimizer steps of 8 records each (4 per micro-batch, 2 accumulated), the first "
                   f"{8 * args.steps} train records, same order for both; seconds per step include the first "
                   "step's warm-up. Both configurations ran one after the other in one process on this machine's 2 "
                   "cores with nothing else heavy running."])
        Path(args.results_json).write_text(table.model_dump_json(indent=1) + "\n")
        print(f"wrote {args.results_json}")


if __name__ == "__main__":
    main()
