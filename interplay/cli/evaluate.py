"""``interplay evaluate``: runs, user agents and recommenders, reports and comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from interplay.backends.base import GenerationParams as G
from interplay.cli.app import app, bad_input, console, fail, option, wide
from interplay.evaluation.config import EvalConfig as E

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate agents and runs from their episode logs.")
app.add_typer(eval_app, name="evaluate")


@eval_app.command("run")
def evaluate_run_cmd(
    run_dir: Path = typer.Argument(..., help="a run directory (episodes.jsonl)"),
    out: Optional[Path] = typer.Option(None, help="where to write metrics.json, episodes.csv, plots (default RUN_DIR/eval)"),
    plots: bool = typer.Option(True, help="write PNG plots"),
) -> None:
    """Metrics of a free simulation run: termination mix, SR/ET/FR, turns to accept, actions, Dist-4, words
    (and every metric registered with interplay.metrics.registry)."""
    from interplay.episode_log import EpisodeLogError
    from interplay.evaluation.run_report import evaluate_run

    with bad_input(EpisodeLogError, ValueError, FileNotFoundError):
        m = evaluate_run(run_dir, out, plots=plots)
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
                 matchscore_encoder: Optional[Path] = None, decoding: str = "constrained", titles: str = "catalogue",
                 **settings) -> E:
    """An EvalConfig from command options (paths as strings, generation settings grouped)."""
    try:
        return E(kind=kind, data=str(data), out=str(out), parts=[p.strip() for p in parts.split(",") if p.strip()],
                 generation=G(max_new_tokens=max_new_tokens, temperature=temperature, decoding=decoding,
                              titles=titles),
                 matchscore_encoder=str(matchscore_encoder) if matchscore_encoder else None, **settings)
    except ValueError as exc:
        fail(exc)


def _run_evaluation(evaluate, table, cfg: E, resume: bool, ray_address: Optional[str], progress: bool) -> None:
    """Run ``evaluate(cfg)``, print its table; bad input is one clear line and exit code 2."""
    with bad_input(ValueError, FileNotFoundError, FileExistsError):
        m = evaluate(cfg, resume=resume, ray_address=ray_address, progress=progress)
    wide.print(table([m]))
    console.print(f"wrote {cfg.out}")


_CONTROLS_HELP = ("decode with the simulation's repetition controls (penalty 1.1; no 3-gram twice in a turn, none of "
                  "4 from the partner's last turn, none of 5 from the own earlier turns), greedy unless --temperature: "
                  "the simulator as simulations run it")
_RESUME = typer.Option(False, help="continue an interrupted evaluation in OUT")
_RAY = typer.Option(None, help="a running Ray cluster (default: RAY_ADDRESS or local)")


@eval_app.command("user")
def evaluate_user_cmd(
    agent: str = option(E, "agent"), data: Path = option(E, "data"), split: str = option(E, "split"),
    out: Path = option(E, "out"), limit: Optional[int] = option(E, "limit"),
    parts: str = option(E, "parts", default="replay,single,human"),
    max_new_tokens: int = option(G, "max_new_tokens"), temperature: float = option(G, "temperature"),
    decoding: str = option(G, "decoding"),
    grounded: bool = option(E, "grounded"),
    decision: str = option(E, "decision"),
    accept_threshold: Optional[float] = option(E, "accept_threshold"),
    seed: int = option(E, "seed"), concurrency: int = option(E, "concurrency"), max_batch: int = option(E, "max_batch"),
    bertscore_model: Optional[str] = option(E, "bertscore_model"),
    bertscore_layers: Optional[int] = option(E, "bertscore_layers"),
    dtype: str = option(E, "dtype"),
    repetition_controls: bool = typer.Option(False, help=_CONTROLS_HELP),
    resume: bool = _RESUME, ray_address: Optional[str] = _RAY, progress: bool = typer.Option(True),
) -> None:
    """Evaluate a user agent: replay SR/ET/FR, single-turn BERTScore/Dist-4/words, real-human view."""
    from interplay.evaluation.compare import user_table
    from interplay.evaluation.evaluate import evaluate_user

    cfg = _eval_config("user", data, out, parts, max_new_tokens, temperature, decoding=decoding, agent=agent,
                       split=split, limit=limit, grounded=grounded, decision=decision,
                       accept_threshold=accept_threshold, seed=seed, concurrency=concurrency, max_batch=max_batch,
                       dtype=dtype, bertscore_model=bertscore_model, bertscore_layers=bertscore_layers)
    if repetition_controls:
        from interplay.runtime.role_decoding import with_simulation_controls

        cfg = cfg.model_copy(update={"generation": with_simulation_controls(cfg.generation)})
    _run_evaluation(evaluate_user, user_table, cfg, resume, ray_address, progress)


@eval_app.command("fidelity")
def evaluate_fidelity_cmd(
    user: list[str] = typer.Option(..., help="a user agent spec to judge (repeat: rule, llm, usersim:CKPT, py:...)"),
    data: Path = option(E, "data"), split: str = option(E, "split"),
    out: Path = typer.Option(..., help="scorecard folder (scorecard.md/.json/.png; one evaluation folder per agent)"),
    limit: Optional[int] = option(E, "limit"),
    decision: str = option(E, "decision", default="score"),
    accept_threshold: list[float] = typer.Option([], help="P(accept) threshold per --user in order (one: all; "
                                                 "default: each checkpoint's calibrated threshold ('interplay evaluate calibrate'), else 0.5)"),
    downstream: list[str] = typer.Option([], help="a finished 'evaluate recommender' folder of a RecSim trained on "
                                         "dialogues simulated with a user agent, or on real ones (repeat; "
                                         "experiments/downstream_utility.sh): the downstream-utility table"),
    parts: str = typer.Option("replay,human,probe,nll", help="evaluation parts per agent (e.g. 'human' first on a "
                              "slow machine; rerun with more to add them: an agent folder keeps what it ran)"),
    seed: int = option(E, "seed"), concurrency: int = option(E, "concurrency"),
    repetition_controls: bool = typer.Option(False, help=_CONTROLS_HELP),
    resume: bool = _RESUME, ray_address: Optional[str] = _RAY, progress: bool = typer.Option(True),
) -> None:
    """Judge user simulators against people on real dialogues: decisions per slice (balanced accuracy,
    kappa, reject F1 with intervals), counterfactual discrimination, behaviour vs people, simulator faults."""
    from interplay.evaluation.fidelity import FidelityConfig, evaluate_fidelity

    try:
        cfg = FidelityConfig(users=user, data=str(data), split=split, out=str(out), limit=limit, decision=decision,
                             accept_thresholds=accept_threshold, downstream=downstream, seed=seed,
                             concurrency=concurrency, parts=[p.strip() for p in parts.split(",") if p.strip()],
                             repetition_controls=repetition_controls)
    except ValueError as exc:
        fail(exc)
    with bad_input(ValueError, FileNotFoundError, FileExistsError):
        card = evaluate_fidelity(cfg, resume=resume, ray_address=ray_address, progress=progress)
    for a in card["agents"]:
        d, g = a["decisions"]["all"], (a["discrimination"] or {}).get("gap") or {}
        ba, gap = (d.get("balanced_accuracy") or {}).get("value"), g.get("value")
        console.print(f"{a['agent']}: balanced accuracy {'-' if ba is None else f'{ba:.3f}'} on {d['n']} items; "
                      f"match-contradict gap {'-' if gap is None else f'{gap:.2f}'}")
    console.print(f"wrote {out / 'scorecard.md'}")


@eval_app.command("recommender")
def evaluate_recommender_cmd(
    agent: str = option(E, "agent"), data: Path = option(E, "data"), split: str = option(E, "split"),
    out: Path = option(E, "out"), limit: Optional[int] = option(E, "limit"),
    max_new_tokens: int = option(G, "max_new_tokens"), temperature: float = option(G, "temperature"),
    decoding: str = option(G, "decoding"),
    titles: str = option(G, "titles"),
    force_recommend: bool = option(E, "force_recommend"),
    rank_items: int = option(E, "rank_items"),
    rank_beam: int = option(E, "rank_beam"),
    recommender_candidates: int = option(E, "recommender_candidates"),
    seed: int = option(E, "seed"), concurrency: int = option(E, "concurrency"), max_batch: int = option(E, "max_batch"),
    recommender_sees_persona: bool = option(E, "recommender_sees_persona"),
    matchscore_encoder: Optional[Path] = option(E, "matchscore_encoder"),
    dtype: str = option(E, "dtype"),
    resume: bool = _RESUME, ray_address: Optional[str] = _RAY, progress: bool = typer.Option(True),
) -> None:
    """Evaluate a recommender at the recorded recommendation of the target: Recall@k, MatchScore, Dist-4, words."""
    from interplay.evaluation.compare import recommender_table
    from interplay.evaluation.evaluate import evaluate_recommender

    cfg = _eval_config("recommender", data, out, "single", max_new_tokens, temperature, matchscore_encoder,
                       decoding=decoding, titles=titles, force_recommend=force_recommend, rank_items=rank_items, rank_beam=rank_beam,
                       recommender_candidates=recommender_candidates, agent=agent, split=split, limit=limit,
                       seed=seed, concurrency=concurrency, max_batch=max_batch, dtype=dtype,
                       recommender_sees_persona=recommender_sees_persona)
    _run_evaluation(evaluate_recommender, recommender_table, cfg, resume, ray_address, progress)


@eval_app.command("calibrate")
def evaluate_calibrate_cmd(
    run: Path = typer.Argument(..., help="a finished 'interplay evaluate user' run of a usersim:CKPT on a valid "
                               "split, with --parts human --decision score"),
) -> None:
    """Store the run's best accept threshold in its checkpoint: every later use of the checkpoint
    (episodes, replays, scored decisions) then decides by it."""
    from interplay.decision_calibration import CALIBRATION_FILE, calibrate_from_run

    with bad_input(ValueError):
        record = calibrate_from_run(run)
    c = record["chosen_on"]
    console.print(f"accept threshold {record['accept_threshold']:.3f} (chosen on {c['data']} {c['split']}, "
                  f"{c['items']} decisions) -> {CALIBRATION_FILE} in the checkpoint")


@eval_app.command("report")
def evaluate_report_cmd(
    roots: list[Path] = typer.Argument(..., help="evaluation folders, or folders holding them"),
    out: Path = typer.Option(Path("runs/report"), help="where to write report.md and its plots"),
) -> None:
    """Every evaluation under ROOTS in one markdown report with plots (each figure names its folder)."""
    from interplay.evaluation.markdown_report import write_report

    with bad_input(FileNotFoundError):
        path = write_report(roots, out)
    console.print(f"wrote {path}")


@eval_app.command("compare")
def evaluate_compare_cmd(
    eval_dirs: list[Path] = typer.Argument(..., help="evaluation folders (from evaluate user / recommender)"),
    out: Path = typer.Option(Path("runs/compare"), help="where to write comparison.json and plots"),
) -> None:
    """Several evaluations side by side: one table and one plot per kind."""
    from interplay.evaluation.compare import compare, recommender_table, user_table

    with bad_input(FileNotFoundError):
        summary = compare(eval_dirs, out)
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
