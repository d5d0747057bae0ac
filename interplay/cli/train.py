"""``interplay train``, ``train-unicrs`` and ``matchscore train``: the models the evaluations need."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from interplay.cli.app import app, bad_input, console, fail, option
from interplay.data.errors import DataFormatError
from interplay.protocol import Role
from interplay.training.train import TrainConfig as T


@app.command("train")
def train_cmd(
    role: Role = option(T, "role"),
    data: Path = option(T, "data"),
    out: Path = option(T, "out"),
    model: Optional[str] = option(T, "model"),
    epochs: float = option(T, "epochs"),
    lr: Optional[float] = option(T, "learning_rate", "--lr"),
    batch_size: int = option(T, "batch_size"),
    grad_accum: int = option(T, "grad_accum"),
    max_length: int = option(T, "max_length"),
    dtype: str = option(T, "dtype"),
    bf16: bool = typer.Option(False, "--bf16", hidden=True, help="the same as --dtype bf16 (kept for old scripts)"),
    lora: bool = option(T, "lora"),
    lora_merge: bool = option(T, "lora_merge"),
    lora_rank: int = option(T, "lora_rank"),
    lora_alpha: int = option(T, "lora_alpha"),
    lora_targets: str = option(T, "lora_targets", default="q_proj,k_proj,v_proj,o_proj"),
    padding_free: bool = option(T, "padding_free"),
    recommender_sees_persona: bool = option(T, "recommender_sees_persona"),
    grounded: bool = option(T, "grounded"),
    grounding_match: bool = option(T, "grounding_match"),
    action_loss_weight: float = option(T, "action_loss_weight"),
    counterfactual_negatives: float = option(T, "counterfactual_negatives"),
    rejections: str = option(T, "rejections"),
    decision_examples: int = option(T, "decision_examples"),
    whole_dialogues: bool = option(T, "whole_dialogues"),
    recommender_candidates: int = option(T, "recommender_candidates"),
    prompt_layout: int = option(T, "prompt_layout"),
    max_train_records: int = option(T, "max_train_records"),
    max_steps: int = option(T, "max_steps"),
    eval_steps: int = option(T, "eval_steps"),
    logging_steps: int = option(T, "logging_steps"),
    save_steps: int = option(T, "save_steps"),
    resume: bool = typer.Option(False, help="continue from the last checkpoint in OUT (start afresh when none)"),
    report_to: str = option(T, "report_to"),
    seed: int = option(T, "seed"),
) -> None:
    """Role-masked SFT of UserSim or RecSim on dialogue records (TRL SFTTrainer + role-mask collator)."""
    from interplay.training.train import train

    cfg = T(role=role, data=str(data), out=str(out), model=model, epochs=epochs, learning_rate=lr,
            batch_size=batch_size, grad_accum=grad_accum, max_length=max_length, dtype="bf16" if bf16 else dtype, lora=lora,
            lora_merge=lora_merge, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets.split(","),
            padding_free=padding_free, recommender_sees_persona=recommender_sees_persona,
            grounded=grounded, grounding_match=grounding_match, action_loss_weight=action_loss_weight,
            counterfactual_negatives=counterfactual_negatives, rejections=rejections,
            decision_examples=decision_examples,
            whole_dialogues=whole_dialogues, recommender_candidates=recommender_candidates,
            prompt_layout=prompt_layout, max_train_records=max_train_records, max_steps=max_steps, eval_steps=eval_steps, logging_steps=logging_steps, save_steps=save_steps,
            report_to=report_to, seed=seed)
    with bad_input(ValueError, OSError):
        metrics = train(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:  # one report from a multi-process launch
        return
    console.print(f"valid loss per epoch: {metrics['valid_loss']}")
    spec = "usersim" if role is Role.USER else "recsim"
    console.print(f"checkpoint: {out}  (use it as --{role.value} {spec}:{out})")


@app.command("merge-adapter")
def merge_adapter_cmd(
    adapter: Path = typer.Argument(..., help="a LoRA adapter folder from 'interplay train --lora'"),
    out: Path = typer.Option(..., help="folder for the full checkpoint"),
) -> None:
    """Merge a LoRA adapter into its base model as a full checkpoint (for backends that load
    plain checkpoints only, e.g. vLLM)."""
    from interplay.backends.adapters import is_adapter, merge_adapter

    if not is_adapter(adapter):
        fail(f"{adapter}: no adapter_config.json there (not an adapter folder)")
    with bad_input(ValueError, OSError):
        merge_adapter(adapter, out)
    console.print(f"checkpoint: {out}")


simulators_app = typer.Typer(no_args_is_help=True, help="The trained simulators shipped with the package.")
app.add_typer(simulators_app, name="simulators")


@simulators_app.command("ship")
def simulators_ship_cmd(
    adapter: Path = typer.Argument(..., help="a LoRA adapter folder from 'interplay train --lora'"),
    role: Role = typer.Option(..., help="which simulator it is"),
    command: str = typer.Option(..., help="the command that trained it (for the model card)"),
    figure: list[str] = typer.Option([], help="a figure line for the model card (repeatable)"),
    dest: Optional[Path] = typer.Option(None, help="where to ship it (default: the package's own folder)"),
) -> None:
    """Copy an adapter into interplay/simulators/ (the default usersim / recsim) with its model card."""
    from interplay.simulators.ship import ship

    with bad_input(ValueError, OSError):
        out = ship(adapter, role, command, figure, dest)
    console.print(f"shipped: {out}")


@app.command("train-unicrs")
def train_unicrs_cmd(
    data: Path = typer.Option(..., help="a folder from 'interplay data build' (train.jsonl, valid.jsonl, catalogue.jsonl)"),
    out: Path = typer.Option(..., help="checkpoint folder (a rerun resumes after the last finished stage)"),
    model: Optional[str] = typer.Option(None, help="frozen causal LM, HF id or path (default: offline SmolLM2-135M)"),
    max_train: int = typer.Option(400, help="training examples per stage"),
    max_valid: int = typer.Option(96, help="valid examples per stage"),
    epochs: int = typer.Option(1),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(1e-3),
    max_context_tokens: int = typer.Option(128, help="dialogue context kept (last N tokens)"),
    coverage: list[Path] = typer.Option([], help="other built data folders to report entity-linking coverage on"),
    seed: int = typer.Option(0),
    progress: bool = typer.Option(True),
) -> None:
    """UniCRS: build the MovieLens KG, link entities, train prompt pre-training, conversation and
    recommendation stages over a frozen LM."""
    from interplay.unicrs.train import TrainSettings, train_unicrs

    settings = TrainSettings(max_train=max_train, max_valid=max_valid, epochs=epochs, batch_size=batch_size, lr=lr,
                             max_context_tokens=max_context_tokens, seed=seed)
    with bad_input(ValueError, OSError, DataFormatError):
        report = train_unicrs(data, out, model, settings, {p.name: p for p in coverage}, progress=progress)
    console.print(f"KG: {report['kg']}")
    for name, cov in report["linking"].items():
        console.print(f"linking {name}: turns with an entity {cov['turns_with_entity']:.3f}, marked titles linked "
                      f"{cov['marked_titles_linked']:.3f}, entities/turn {cov['entities_per_turn']:.2f}")
    for stage, r in report["stages"].items():
        console.print(f"{stage}: valid loss {r['valid_loss_before']:.4f} -> {r['valid_loss_after']:.4f} "
                      f"({r['train_examples']} examples, {r['seconds']} s)")
    console.print(f"checkpoint: {out}  (use it as --recommender unicrs:{out})")


matchscore_app = typer.Typer(no_args_is_help=True, help="The MatchScore item encoder.")
app.add_typer(matchscore_app, name="matchscore")


@matchscore_app.command("train")
def matchscore_train_cmd(
    data_root: Path = typer.Option(None, help="folder holding movielens-small/ (default: ../shared/data or $INTERPLAY_DATA)"),
    out: Optional[Path] = typer.Option(None, help="encoder folder (default: the cache folder evaluate uses)"),
    epochs: int = typer.Option(20), dim: int = typer.Option(128), lr: float = typer.Option(2e-3),
    holdout: float = typer.Option(0.1, help="share of each user's latest positives held out for test (and as many for validation)"),
    min_rating: float = typer.Option(3.5, help="ratings at or above are positives"), seed: int = typer.Option(0),
) -> None:
    """Train the item encoder (frozen MiniLM text embedding + projection) with BPR on MovieLens ratings."""
    from interplay.data.build import default_data_root
    from interplay.matchscore.location import matchscore_dir
    from interplay.matchscore.train import MatchScoreTrainConfig, train_item_encoder

    folder = out or matchscore_dir(None)
    cfg = MatchScoreTrainConfig(data_root=str(data_root or default_data_root()), out=str(folder), epochs=epochs,
                                dim=dim, lr=lr, min_rating=min_rating, holdout=holdout, seed=seed)
    with bad_input(DataFormatError, FileNotFoundError, ValueError):
        m = train_item_encoder(cfg)
    table = Table(title=f"item encoder held-out ranking ({m['users']} users, {m['items']} items)")
    for c in ("ranking", "Recall@10", "NDCG@10"):
        table.add_column(c)
    for name, key in (("encoder (test)", "test"), ("popularity (test)", "test_popularity"),
                      ("encoder (valid)", "valid"), ("popularity (valid)", "valid_popularity")):
        table.add_row(name, f"{m[key]['recall@10']:.4f}", f"{m[key]['ndcg@10']:.4f}")
    console.print(table)
    console.print(f"wrote {folder}")
