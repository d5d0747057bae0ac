"""The ``interplay`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from interplay.protocol import Role

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Interplay: simulate conversational recommendation.")
console = Console()
#: tables in the paper's layout are wide; off a terminal (logs, CI) do not squeeze them
wide = console if console.is_terminal else Console(width=200)


@app.callback()
def _root() -> None:
    """Interplay: simulate conversational recommendation with independent LLM agents."""


def print_summary(summary: dict, run_dir: str) -> None:
    """The run summary as a table."""
    table = Table(title=f"Run {run_dir}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("episodes", f"{summary['episodes']} / {summary['planned']} planned")
    for reason, n in summary["termination"].items():
        table.add_row(f"  {reason}", str(n))
    for kind, n in summary.get("failure", {}).items():
        if n:
            table.add_row(f"  failed: {kind}", str(n))
    table.add_row("mean turns", f"{summary['mean_turns']:.2f}")
    table.add_row("parsed turn rate", f"{summary['parsed_turn_rate']:.3f}")
    table.add_row("wall s (this invocation)", f"{summary['wall_s']:.1f}")
    table.add_row("turns/s (this invocation)", f"{summary['turns_per_s']:.2f}")
    console.print(table)
    console.print(f"episode log: {Path(run_dir) / 'episodes.jsonl'}")


@app.command()
def simulate(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, help="JSON config (format of RUN_DIR/config.json); flags given override it"),
    user: str = typer.Option("llm", help="user agent spec: rule | llm | llm:PATH_OR_ID | usersim:CKPT | py:module:Class"),
    recommender: str = typer.Option("llm", help="recommender agent spec: rule | llm[:MODEL] | recsim:CKPT | py:module:Class"),
    data: str = typer.Option("demo", help="'demo' (embedded set), a folder from 'interplay data build', or a JSON file"),
    split: str = typer.Option("test", help="which split of a built data folder to simulate"),
    episodes: int = typer.Option(12, min=1, help="number of episodes (records are cycled)"),
    max_turns: int = typer.Option(10, min=1, help="turn cap per episode"),
    out: str = typer.Option("runs/demo", help="run directory"),
    resume: bool = typer.Option(False, help="continue a run in OUT, skipping logged episodes (infrastructure "
                                "failures are run again)"),
    rerun_failed: bool = typer.Option(False, help="with --resume: run failed episodes (protocol, agent) again too"),
    seed: int = typer.Option(0, help="base seed; episode i uses seed+i"),
    first_speaker: Role = typer.Option(Role.USER, help="who opens the dialogue"),
    max_retries: int = typer.Option(2, min=0, help="retries of a malformed turn before protocol_error"),
    concurrency: int = typer.Option(32, min=1, help="episodes in flight at once (default from benchmarks/sim_throughput.py)"),
    max_batch: int = typer.Option(32, min=1, help="largest generation batch of a model server"),
    max_new_tokens: int = typer.Option(96, min=1, help="generation cap per turn"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
    decoding: str = typer.Option("constrained", help="constrained: LLM agents generate only legal turns (turn "
                                 "grammar, catalogue titles); free: free text parsed afterwards"),
    dtype: str = typer.Option("auto", help="auto (bf16 where the CPU/GPU supports it) | float32 | bfloat16 | float16"),
    prefix_cache_mb: float = typer.Option(1024.0, min=0.0, help="MiB of episode KV caches kept per model for reuse "
                                          "across turns (0: off)"),
    grounded: bool = typer.Option(True, help="the user sees the catalogue facts (genres, keywords, year) of each "
                                  "recommended item, never the target's identity"),
    recommender_candidates: int = typer.Option(0, min=0, help="show the recommender K catalogue items retrieved "
                                               "from the conversation before each of its turns (0: none)"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS or local)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Run simulated conversations and write RUN_DIR/episodes.jsonl."""
    from interplay.backends.base import GenerationParams
    from interplay.runtime.simulation import SimulationConfig, run_simulation

    from interplay.runtime.simulation import load_config

    # typer may ship its own click: compare the source by name, not by enum identity
    given = {n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"}
    flags = dict(user=user, recommender=recommender, data=data, split=split, episodes=episodes, max_turns=max_turns, out=out,
                 seed=seed, first_speaker=first_speaker, max_retries=max_retries, concurrency=concurrency,
                 max_batch=max_batch, dtype=dtype, prefix_cache_mb=prefix_cache_mb, grounded=grounded,
                 recommender_candidates=recommender_candidates)
    gen = dict(max_new_tokens=max_new_tokens, temperature=temperature, decoding=decoding)
    try:
        if config is not None:
            base = load_config(config)
            flags = {k: v for k, v in flags.items() if k in given}
            gen = {k: v for k, v in gen.items() if k in given}
            cfg = base.model_copy(update={**flags, "generation": base.generation.model_copy(update=gen)})
            cfg = SimulationConfig.model_validate(cfg.model_dump())
        else:
            cfg = SimulationConfig(**flags, generation=GenerationParams(**gen))
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] config {config}: {exc}")
        raise typer.Exit(2)
    try:
        summary = run_simulation(cfg, resume=resume, ray_address=ray_address, progress=progress,
                                 rerun_failed=rerun_failed)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; finished episodes are in {cfg.out}/episodes.jsonl. Continue with --resume.")
        raise typer.Exit(130)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    print_summary(summary, cfg.out)


data_app = typer.Typer(no_args_is_help=True, help="Build and inspect dialogue record sets.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build(
    source: str = typer.Option(..., help="redial | inspired | iard | pearl | episodes (the episode log of "
                               "an 'interplay simulate' run: simulated dialogues as training data), a source "
                               "registered with interplay.data.sources, or module.path:loader"),
    path: list[str] = typer.Option(..., help="the source's file or folder ('hub' for PEARL from the Hugging Face "
                                   "hub); repeat to combine several: duplicate record ids are kept once"),
    out: Path = typer.Option(..., help="output folder (replaced only when the build succeeds)"),
    catalogue: Optional[Path] = typer.Option(None, help="folder with movielens-small/ and movielens-keywords/ "
                                             "(default: $INTERPLAY_DATA or ../shared/data)"),
    skip_invalid: bool = typer.Option(False, help="skip malformed records (counted and reported) instead of failing"),
    field_map: Optional[str] = typer.Option(None, help="PEARL only: KEY=FIELD,... overriding the expected field names"),
    annotator: str = typer.Option("rule", help="labels turns without gold acts: rule | llm | llm:MODEL"),
    progress: bool = typer.Option(True),
) -> None:
    """Convert a source's dialogues into unified records, one JSONL per split."""
    from interplay.data.build import build_dataset
    from interplay.data.errors import DataFormatError

    try:
        fmap = dict(_key_value(kv) for kv in field_map.split(",")) if field_map else None
        report = build_dataset(source, path, out, catalogue, skip_invalid=skip_invalid, progress=progress,
                               field_map=fmap, annotator=annotator)
    except (DataFormatError, ValueError, OSError) as exc:
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2)
    if len(path) > 1:
        for src, per_split in report["read"].items():
            console.print(f"read {per_split} from {src}", markup=False)
    console.print(f"duplicates dropped: {report['duplicates_dropped']} (record ids read more than once; "
                  "the first path's copy is kept, a test/valid copy before a train copy)", markup=False)
    console.print(f"records per split: {report['records']}; skipped: {report['skipped']}; "
                  f"target match rate: {report['target_match_rate']}")
    for reason in report["skipped_reasons"][:10]:
        console.print(f"  skipped: {reason}", markup=False)
    if "pearl_filter" in report:
        console.print(f"PEARL filter: {report['pearl_filter']}", markup=False)
    console.print(f"wrote {out}")


def _key_value(text: str) -> tuple[str, str]:
    """``"KEY=FIELD"`` -> ``("KEY", "FIELD")``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"--field-map: expected KEY=FIELD, got {text!r}")
    return key.strip(), value.strip()


@data_app.command("stats")
def data_stats(
    folder: Path = typer.Argument(..., help="a folder built by 'interplay data build'"),
    json_out: bool = typer.Option(False, "--json", help="also print every figure as JSON"),
) -> None:
    """Counts per split, turns, action mix per role, outcome rates, catalogue match rate."""
    from interplay.data.build import dataset_stats
    from interplay.data.errors import DataFormatError

    try:
        stats = dataset_stats(folder)
    except (DataFormatError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    table = Table(title=f"Records in {folder}")
    for col in ("split", "records", "mean turns", "accepted", "rejected / record", "target in catalogue"):
        table.add_column(col, justify="right")
    for split, s in stats.items():
        rate = s["target_in_catalogue_rate"]
        table.add_row(split, str(s["records"]), f"{s['mean_turns']:.1f}", f"{s['accepted_rate']:.2f}",
                      f"{s['mean_rejected']:.2f}", "-" if rate is None else f"{rate:.3f}")
    console.print(table)
    mix = Table(title="Actions per role (share of the role's turns)")
    mix.add_column("role / action")
    for split in stats:
        mix.add_column(split, justify="right")
    for role in ("user", "recommender"):
        for action in sorted({a for s in stats.values() for a in s["actions"].get(role, {})}):
            cells = []
            for s in stats.values():
                counts = s["actions"].get(role, {})
                total = sum(counts.values()) or 1
                cells.append(f"{counts.get(action, 0) / total:.2f}")
            mix.add_row(f"{role} / {action}", *cells)
    console.print(mix)
    console.print_json(data=stats) if json_out else None


eval_app = typer.Typer(no_args_is_help=True, help="Evaluate agents and runs from their episode logs.")
app.add_typer(eval_app, name="evaluate")


@eval_app.command("run")
def evaluate_run_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory (episodes.jsonl)"),
    out: Optional[Path] = typer.Option(None, help="where to write metrics.json, episodes.csv, plots (default RUN_DIR/eval)"),
    plots: bool = typer.Option(True, help="write PNG plots"),
) -> None:
    """Metrics of a free simulation run: termination mix, SR/ET/FR, turns to accept, actions, Dist-4, words."""
    from interplay.episode_log import EpisodeLogError
    from interplay.evaluation.run_report import evaluate_run

    try:
        m = evaluate_run(run_dir, out, plots=plots)
    except (EpisodeLogError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    table = Table(title=f"{run_dir}: {m['episodes']} episodes; {'; '.join(m['agents'])}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("SR", "ET", "FR"):
        table.add_row(k, f"{m['outcome'][k]:.3f}")
    for k, v in m["termination"].items():
        table.add_row(f"termination {k}", f"{v:.3f}")
    tta = m["turns_to_accept"]
    table.add_row("turns to accept (mean)", "-" if tta["mean"] is None else f"{tta['mean']:.2f}")
    table.add_row("parsed turn rate (mean)", f"{m['parsed_rate']['mean']:.3f}")
    for role in ("user", "recommender"):
        w = m["words"][role]["mean"]
        table.add_row(f"{role} Dist-4 / words", f"{m['dist4'][role]:.3f} / {'-' if w is None else f'{w:.1f}'}")
    console.print(table)
    console.print(f"wrote {out or run_dir / 'eval'}")


def _eval_config(kind: str, data: Path, out: Path, parts: str, max_new_tokens: int, temperature: float,
                 matchscore_encoder: Optional[Path] = None, decoding: str = "constrained", **settings):
    """An EvalConfig from command options (paths as strings, generation settings grouped)."""
    from interplay.backends.base import GenerationParams
    from interplay.evaluation.config import EvalConfig

    return EvalConfig(kind=kind, data=str(data), out=str(out), parts=[p.strip() for p in parts.split(",") if p.strip()],
                      generation=GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature,
                                                  decoding=decoding),
                      matchscore_encoder=str(matchscore_encoder) if matchscore_encoder else None, **settings)


def _run_evaluation(evaluate, table, cfg, resume: bool, ray_address: Optional[str], progress: bool) -> None:
    """Run ``evaluate(cfg)``, print its table, turn bad input into a clear error and exit code 2."""
    try:
        m = evaluate(cfg, resume=resume, ray_address=ray_address, progress=progress)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    wide.print(table([m]))
    console.print(f"wrote {cfg.out}")


_AGENT = typer.Option(..., help="agent spec under test: rule, llm[:MODEL], usersim:CKPT, recsim:CKPT, py:module:Class")
_DATA = typer.Option(..., help="a folder from 'interplay data build'")
_SPLIT = typer.Option("test", help="split to evaluate on")
_OUT = typer.Option(..., help="evaluation folder (metrics.json, CSVs, plots)")
_LIMIT = typer.Option(None, help="only the first N records of the split")


@eval_app.command("user")
def evaluate_user_cmd(
    agent: str = _AGENT, data: Path = _DATA, split: str = _SPLIT, out: Path = _OUT, limit: Optional[int] = _LIMIT,
    parts: str = typer.Option("replay,single,human", help="replay (SR/ET/FR), single (BERTScore...), human (real-human view)"),
    max_new_tokens: int = typer.Option(96), temperature: float = typer.Option(0.0, help="0: greedy"),
    decoding: str = typer.Option("constrained", help="constrained (legal turns only) | free (parsed afterwards)"),
    grounded: bool = typer.Option(True, help="the user sees the catalogue facts of each recommended item"),
    decision: str = typer.Option("generate", help="real-human view: generate the reply and read its action, or "
                                 "score P(action) without generating (LLM agents; much faster)"),
    accept_threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="with --decision score: accept when "
                                           "P(accept) >= this (choose it on a valid split: metrics' best_threshold)"),
    seed: int = typer.Option(0), concurrency: int = typer.Option(16, help="tasks in flight"),
    max_batch: int = typer.Option(16, help="largest generation batch"),
    bertscore_model: Optional[str] = typer.Option(None, help="local model folder for BERTScore (default: offline MiniLM)"),
    bertscore_layers: Optional[int] = typer.Option(None, help="its layer (default: 6 for MiniLM)"),
    dtype: str = typer.Option("auto", help="model dtype: auto (bf16 where supported) | float32 | bfloat16"),
    resume: bool = typer.Option(False, help="continue an interrupted evaluation in OUT"),
    ray_address: Optional[str] = typer.Option(None, help="a running Ray cluster (default: RAY_ADDRESS or local)"),
    progress: bool = typer.Option(True),
) -> None:
    """Evaluate a user agent: replay SR/ET/FR, single-turn BERTScore/Dist-4/words, real-human view."""
    from interplay.evaluation.compare import user_table
    from interplay.evaluation.evaluate import evaluate_user

    cfg = _eval_config("user", data, out, parts, max_new_tokens, temperature, decoding=decoding, agent=agent,
                       split=split, limit=limit, grounded=grounded, decision=decision,
                       accept_threshold=accept_threshold,
                       seed=seed, concurrency=concurrency, max_batch=max_batch, dtype=dtype,
                       bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    _run_evaluation(evaluate_user, user_table, cfg, resume, ray_address, progress)


@eval_app.command("recommender")
def evaluate_recommender_cmd(
    agent: str = _AGENT, data: Path = _DATA, split: str = _SPLIT, out: Path = _OUT, limit: Optional[int] = _LIMIT,
    max_new_tokens: int = typer.Option(96), temperature: float = typer.Option(0.0, help="0: greedy"),
    decoding: str = typer.Option("constrained", help="constrained (legal turns only) | free (parsed afterwards)"),
    force_recommend: bool = typer.Option(True, help="narrow the scored turn to a recommendation (constrained decoding)"),
    rank_items: int = typer.Option(0, min=0, help="LLM recommenders: rank the catalogue by likelihood, top N "
                                   "(Recall@10/50; exact, minutes per record on a CPU)"),
    rank_beam: int = typer.Option(0, min=0, help="with --rank-items: 0 = exact ranking; B = beam search keeping "
                                  "B title prefixes per token (approximate, seconds per record)"),
    recommender_candidates: int = typer.Option(0, min=0, help="show the recommender K catalogue candidates "
                                               "retrieved from the conversation"),
    seed: int = typer.Option(0), concurrency: int = typer.Option(16), max_batch: int = typer.Option(16),
    recommender_sees_persona: bool = typer.Option(False, help="give the recommender the persona (prompted baselines)"),
    matchscore_encoder: Optional[Path] = typer.Option(None, help="item encoder folder (default: the one 'interplay matchscore train' writes)"),
    dtype: str = typer.Option("auto", help="model dtype: auto (bf16 where supported) | float32 | bfloat16"),
    resume: bool = typer.Option(False), ray_address: Optional[str] = typer.Option(None), progress: bool = typer.Option(True),
) -> None:
    """Evaluate a recommender at the recorded recommendation of the target: Recall@k, MatchScore, Dist-4, words."""
    from interplay.evaluation.compare import recommender_table
    from interplay.evaluation.evaluate import evaluate_recommender

    cfg = _eval_config("recommender", data, out, "single", max_new_tokens, temperature, matchscore_encoder,
                       decoding=decoding, force_recommend=force_recommend, rank_items=rank_items,
                       rank_beam=rank_beam,
                       recommender_candidates=recommender_candidates, agent=agent, split=split, limit=limit, seed=seed, concurrency=concurrency, max_batch=max_batch,
                       dtype=dtype, recommender_sees_persona=recommender_sees_persona)
    _run_evaluation(evaluate_recommender, recommender_table, cfg, resume, ray_address, progress)


@eval_app.command("report")
def evaluate_report_cmd(
    roots: list[Path] = typer.Argument(..., help="evaluation folders, or folders holding them"),
    out: Path = typer.Option(Path("runs/report"), help="where to write report.md and its plots"),
) -> None:
    """Every evaluation under ROOTS in one markdown report with plots (each figure names its folder)."""
    from interplay.evaluation.markdown_report import write_report

    try:
        path = write_report(roots, out)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    console.print(f"wrote {path}")


@eval_app.command("compare")
def evaluate_compare_cmd(
    eval_dirs: list[Path] = typer.Argument(..., help="evaluation folders (from evaluate user / recommender)"),
    out: Path = typer.Option(Path("runs/compare"), help="where to write comparison.json and plots"),
) -> None:
    """Several evaluations side by side: one table and one plot per kind."""
    from interplay.evaluation.compare import compare, recommender_table, user_table

    try:
        summary = compare(eval_dirs, out)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    if summary["user"]:
        wide.print(user_table(summary["user"]))
    if summary["recommender"]:
        wide.print(recommender_table(summary["recommender"]))
    if "turn_agreement" in summary:
        a = summary["turn_agreement"]
        console.print(f"same prompts in both: {a['shared_tasks']} tasks; identical action "
                      f"{a['same_action']:.3f}, identical text {a['same_text']:.3f}" if a["shared_tasks"] else
                      "the two evaluations share no task")
    console.print(f"wrote {out}")


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
    from interplay.data.errors import DataFormatError
    from interplay.matchscore.location import matchscore_dir
    from interplay.matchscore.train import MatchScoreTrainConfig, train_item_encoder

    folder = out or matchscore_dir(None)
    cfg = MatchScoreTrainConfig(data_root=str(data_root or default_data_root()), out=str(folder), epochs=epochs,
                                dim=dim, lr=lr, min_rating=min_rating, holdout=holdout, seed=seed)
    try:
        m = train_item_encoder(cfg)
    except (DataFormatError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    table = Table(title=f"item encoder held-out ranking ({m['users']} users, {m['items']} items)")
    for c in ("ranking", "Recall@10", "NDCG@10"):
        table.add_column(c)
    for name, key in (("encoder (test)", "test"), ("popularity (test)", "test_popularity"),
                      ("encoder (valid)", "valid"), ("popularity (valid)", "valid_popularity")):
        table.add_row(name, f"{m[key]['recall@10']:.4f}", f"{m[key]['ndcg@10']:.4f}")
    console.print(table)
    console.print(f"wrote {folder}")


@app.command("train")
def train_cmd(
    role: Role = typer.Option(..., help="which simulator: user (UserSim) or recommender (RecSim)"),
    data: Path = typer.Option(..., help="a folder from 'interplay data build' (train.jsonl, valid.jsonl)"),
    out: Path = typer.Option(..., help="checkpoint folder"),
    model: Optional[str] = typer.Option(None, help="HF id or path of a causal LM (default: offline SmolLM2-135M)"),
    epochs: float = typer.Option(2.0, help="epochs (the paper: 2)"),
    lr: Optional[float] = typer.Option(None, help="learning rate (default 2e-4, the paper's; use ~1e-5 for full fine-tuning of 8B models)"),
    batch_size: int = typer.Option(4, help="records per micro-batch"),
    grad_accum: int = typer.Option(4, help="micro-batches per optimizer step (effective batch 16)"),
    max_length: int = typer.Option(1024, help="tokens per example; longer dialogues are windowed"),
    bf16: bool = typer.Option(False, help="bfloat16 weights and autocast"),
    lora: bool = typer.Option(False, help="LoRA (peft) instead of full fine-tuning; merged into the checkpoint"),
    lora_rank: int = typer.Option(16),
    lora_alpha: int = typer.Option(32),
    lora_targets: str = typer.Option("q_proj,k_proj,v_proj,o_proj", help="comma-separated module names"),
    padding_free: bool = typer.Option(True, help="flattened batches with position_ids (faster) vs padded"),
    recommender_sees_persona: bool = typer.Option(False, help="RecSim header includes the persona"),
    grounded: bool = typer.Option(True, help="UserSim reads the catalogue facts of each recommended item (DATA/catalogue.jsonl)"),
    grounding_match: bool = typer.Option(False, help="UserSim, grounded: each item's facts also say how many of its "
                                         "target attributes the item shows ('Matches 2 of your 6 wishes')"),
    action_loss_weight: float = typer.Option(1.0, min=0.0, help="loss weight of the action tags vs 1 for other tokens"),
    counterfactual_negatives: float = typer.Option(0.0, min=0.0, max=1.0, help="UserSim: share of train records "
                                                   "that also give a rejected counterfactual recommendation"),
    recommender_candidates: int = typer.Option(0, min=0, help="RecSim: show K catalogue candidates retrieved from "
                                               "the conversation before each of its turns (0: the paper's setup)"),
    max_steps: int = typer.Option(-1, help="stop after N optimizer steps (-1: by epochs)"),
    eval_steps: int = typer.Option(0, help="evaluate on valid every N steps (0: once per epoch)"),
    logging_steps: int = typer.Option(10, help="log the training loss every N steps"),
    save_steps: int = typer.Option(0, help="save a resumable checkpoint every N steps (0: once per epoch)"),
    resume: bool = typer.Option(False, help="continue from the last checkpoint in OUT (start afresh when none)"),
    report_to: str = typer.Option("auto", help="auto (tensorboard when installed) | none | tensorboard | wandb"),
    seed: int = typer.Option(0),
) -> None:
    """Role-masked SFT of UserSim or RecSim on dialogue records (TRL SFTTrainer + role-mask collator)."""
    from interplay.training.train import TrainConfig, train

    cfg = TrainConfig(role=role, data=str(data), out=str(out), model=model, epochs=epochs, learning_rate=lr,
                      batch_size=batch_size, grad_accum=grad_accum, max_length=max_length, bf16=bf16, lora=lora,
                      lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets.split(","),
                      padding_free=padding_free, recommender_sees_persona=recommender_sees_persona,
                      grounded=grounded, grounding_match=grounding_match, action_loss_weight=action_loss_weight,
                      counterfactual_negatives=counterfactual_negatives,
                      recommender_candidates=recommender_candidates, max_steps=max_steps, eval_steps=eval_steps, logging_steps=logging_steps,
                      save_steps=save_steps, report_to=report_to, seed=seed)
    try:
        metrics = train(cfg, resume=resume)
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    console.print(f"valid loss per epoch: {metrics['valid_loss']}")
    spec = "usersim" if role is Role.USER else "recsim"
    console.print(f"checkpoint: {out}  (use it as --{role.value} {spec}:{out})")


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
    from interplay.data.errors import DataFormatError
    from interplay.unicrs.train import TrainSettings, train_unicrs

    settings = TrainSettings(max_train=max_train, max_valid=max_valid, epochs=epochs, batch_size=batch_size, lr=lr,
                             max_context_tokens=max_context_tokens, seed=seed)
    try:
        report = train_unicrs(data, out, model, settings, {p.name: p for p in coverage}, progress=progress)
    except (ValueError, OSError, DataFormatError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    console.print(f"KG: {report['kg']}")
    for name, cov in report["linking"].items():
        console.print(f"linking {name}: turns with an entity {cov['turns_with_entity']:.3f}, marked titles linked "
                      f"{cov['marked_titles_linked']:.3f}, entities/turn {cov['entities_per_turn']:.2f}")
    for stage, r in report["stages"].items():
        console.print(f"{stage}: valid loss {r['valid_loss_before']:.4f} -> {r['valid_loss_after']:.4f} "
                      f"({r['train_examples']} examples, {r['seconds']} s)")
    console.print(f"checkpoint: {out}  (use it as --recommender unicrs:{out})")


@app.command()
def show(
    run_dir: str = typer.Argument(..., help="a run directory"),
    episodes: int = typer.Option(1, min=1, help="how many episodes to print"),
    raw: bool = typer.Option(False, help="print raw model output and parse errors too"),
) -> None:
    """Print episode transcripts of a run."""
    from interplay.episode_log import EPISODES_FILE, EpisodeLogError, read_episodes

    try:
        for n, ep in enumerate(read_episodes(Path(run_dir) / EPISODES_FILE)):
            if n >= episodes:
                break
            console.rule(f"{ep.episode_id}  target: {ep.target.title}  ->  {ep.termination.value}")
            for t in ep.turns:
                who = "[cyan]user[/cyan]" if t.role is Role.USER else "[magenta]recommender[/magenta]"
                if t.action is None:
                    console.print(f"{who} [red]unparsed[/red]: {t.parse_error}", markup=True)
                else:
                    console.print(f"{who} <{t.action.value}> ", end="", markup=True)
                    console.print(t.text, markup=False, highlight=False)
                if raw or t.action is None:
                    for fa in t.failed_attempts:
                        console.print(f"    rejected: {fa.error}\n      raw: {fa.raw!r}", markup=False)
                    if t.raw is not None:
                        console.print(f"    raw: {t.raw!r}", markup=False)
            if ep.accepted_item:
                console.print(f"accepted: {ep.accepted_item}", markup=False)
    except (FileNotFoundError, EpisodeLogError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
