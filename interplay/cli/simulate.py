"""``interplay simulate`` and ``interplay show``: run conversations, read their transcripts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from interplay.cli.app import app, bad_input, console, fail, option
from interplay.protocol import Role
from interplay.runtime.role_decoding import SimulationGeneration as G
from interplay.runtime.simulation import SimulationConfig as S


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


#: options that are SimulationConfig fields (the rest: how this invocation runs)
RUN_FIELDS = ("user", "recommender", "data", "split", "episodes", "max_turns", "out", "seed", "first_speaker",
              "max_retries", "concurrency", "max_batch", "dtype", "prefix_cache_mb", "prefix_cache_spill", "grounded",
              "recommender_candidates", "actor_restarts", "replicas", "turn_cap_percentile")
GENERATION_FIELDS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "no_repeat_ngram",
                     "partner_no_repeat_ngram", "own_no_repeat_ngram", "decoding", "titles")


@app.command()
def simulate(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, help="JSON config (format of RUN_DIR/config.json); flags given override it"),
    user: str = option(S, "user"),
    recommender: str = option(S, "recommender"),
    data: str = option(S, "data"),
    split: str = option(S, "split"),
    episodes: int = option(S, "episodes"),
    max_turns: int = option(S, "max_turns"),
    out: str = option(S, "out"),
    resume: bool = typer.Option(False, help="continue a run in OUT, skipping logged episodes (infrastructure "
                                "failures are run again)"),
    rerun_failed: bool = typer.Option(False, help="with --resume: run failed episodes (protocol, agent) again too"),
    seed: int = option(S, "seed"),
    first_speaker: Role = option(S, "first_speaker"),
    max_retries: int = option(S, "max_retries"),
    concurrency: int = option(S, "concurrency"),
    max_batch: int = option(S, "max_batch"),
    max_new_tokens: int = option(G, "max_new_tokens"),
    temperature: float = option(G, "temperature"),
    top_p: float = option(G, "top_p"),
    repetition_penalty: float = option(G, "repetition_penalty"),
    no_repeat_ngram: int = option(G, "no_repeat_ngram"),
    partner_no_repeat_ngram: int = option(G, "partner_no_repeat_ngram"),
    own_no_repeat_ngram: int = option(G, "own_no_repeat_ngram"),
    turn_cap_percentile: float = option(S, "turn_cap_percentile"),
    decoding: str = option(G, "decoding"),
    titles: str = option(G, "titles"),
    dtype: str = option(S, "dtype"),
    prefix_cache_mb: float = option(S, "prefix_cache_mb"),
    prefix_cache_spill: bool = option(S, "prefix_cache_spill"),
    grounded: bool = option(S, "grounded"),
    recommender_candidates: int = option(S, "recommender_candidates"),
    actor_restarts: int = option(S, "actor_restarts"),
    replicas: int = option(S, "replicas"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS or local)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Run simulated conversations and write RUN_DIR/episodes.jsonl.

    Turns are sampled (seeded per episode) with repetition controls and per-role turn caps from the data.

    Per-role settings: a --config's user_decoding / recommender_decoding. Greedy, as earlier runs:

    --temperature 0 --repetition-penalty 1 --no-repeat-ngram 0 --partner-no-repeat-ngram 0 --own-no-repeat-ngram 0
    --turn-cap-percentile 0
    """
    from interplay.runtime.simulation import load_config, run_simulation

    values = locals()
    # typer may ship its own click: compare the source by name, not by enum identity
    given = {n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "") == "COMMANDLINE"}
    flags = {k: values[k] for k in RUN_FIELDS}
    gen = {k: values[k] for k in GENERATION_FIELDS}
    try:
        if config is not None:
            base = load_config(config)
            flags = {k: v for k, v in flags.items() if k in given}
            gen = {k: v for k, v in gen.items() if k in given}
            cfg = base.model_copy(update={**flags, "generation": base.generation.model_copy(update=gen)})
            cfg = S.model_validate(cfg.model_dump())
        else:
            cfg = S(**flags, generation=G(**gen))
    except (ValueError, OSError) as exc:
        fail(f"config {config}: {exc}" if config is not None and not hasattr(exc, "errors") else exc)
    from interplay.runtime.simulation import RunStopped

    try:
        summary = run_simulation(cfg, resume=resume, ray_address=ray_address, progress=progress,
                                 rerun_failed=rerun_failed)
    except RunStopped as exc:
        console.print(f"[red]stopped:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        fail(exc)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; finished episodes are in {cfg.out}/episodes.jsonl. Continue with --resume.")
        raise typer.Exit(130)
    print_summary(summary, cfg.out)


@app.command()
def show(
    run_dir: str = typer.Argument(..., help="a run directory"),
    episodes: int = typer.Option(1, min=1, help="how many episodes to print"),
    raw: bool = typer.Option(False, help="print raw model output and parse errors too"),
) -> None:
    """Print episode transcripts of a run: the first ``episodes`` by episode id (each episode's
    latest attempt), whatever order they finished in."""
    from interplay.episode_log import EPISODES_FILE, EpisodeLogError, latest_episodes

    with bad_input(FileNotFoundError, EpisodeLogError):
        logged = sorted(latest_episodes(Path(run_dir) / EPISODES_FILE), key=lambda e: e.episode_id)
        for ep in logged[:episodes]:
            failure = f" ({ep.failure.value})" if ep.failure else ""
            console.rule(f"{ep.episode_id}  target: {ep.target.title}  ->  {ep.termination.value}{failure}")
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
