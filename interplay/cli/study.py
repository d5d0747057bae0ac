"""``interplay study``: create a head-to-head human study and read its results."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from interplay.cli.app import app, bad_input, console, fail, wide

study_app = typer.Typer(no_args_is_help=True, help="Head-to-head human studies: two systems' dialogues, six criteria.")
app.add_typer(study_app, name="study")

#: where ``interplay studio`` listens by default; the links printed for judges point there
DEFAULT_STUDIO_URL = "http://127.0.0.1:8765"


@study_app.command("create")
def study_create(
    a: Path = typer.Option(..., "--a", help="run folder of system A (holds episodes.jsonl)"),
    b: Optional[Path] = typer.Option(None, "--b", help="run folder of system B"),
    data: Optional[Path] = typer.Option(None, help="instead of --b: a data folder (interplay data build) whose "
                                        "recorded human dialogues are side B"),
    split: str = typer.Option("test", help="with --data: the split whose records are side B"),
    out: Path = typer.Option(..., help="the study file to create (an existing one is never overwritten)"),
    judges: Optional[int] = typer.Option(None, "--judges", min=1, help="number of judges, named judge-1..N (default 3)"),
    judge: Optional[list[str]] = typer.Option(None, "--judge", help="a judge's name; repeat once per judge"),
    ties: bool = typer.Option(False, "--ties", help="let judges answer 'tie'"),
    seed: int = typer.Option(0, help="seed of the sides shown left/right and of each judge's order of pairs"),
    title: Optional[str] = typer.Option(None, help="the study's title (default: 'A vs B')"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N pairs"),
    url: str = typer.Option(DEFAULT_STUDIO_URL, help="the studio's address, for the judges' links"),
) -> None:
    """Pair the episodes of two runs (or a run and a data set's human dialogues) by record id and
    write a study file with one secret link per judge."""
    from interplay.studio.study import create_study

    if judges is not None and judge:
        fail("give --judges N or --judge NAME (repeated), not both")
    if b is not None and data is not None:
        fail("side B: give --b RUN or --data DIR, not both")
    if b is None and data is None:
        fail("side B: give --b RUN or --data DIR --split S")
    with bad_input(ValueError, OSError, sqlite3.Error):
        study = create_study(out, a, b, data=data, split=split if data is not None else None,
                             judges=list(judge) if judge else (judges or 3), allow_tie=ties, seed=seed,
                             title=title, limit=limit)
    meta = study.meta
    counts, left = meta["counts"], meta["left_out"]
    console.print(f"study: {out} ({meta['title']})", markup=False, soft_wrap=True)
    console.print(f"pairs: {counts['pairs']}" + (f" (first {counts['pairs']} of {counts['pairs_available']})"
                                                 if counts["pairs"] < counts["pairs_available"] else ""))
    console.print(f"left out: {left['only_a']} episodes of A with no match in B, {left['only_b']} of B with no "
                  f"match in A; failed episodes: {left['failed_a']} of A, {left['failed_b']} of B", soft_wrap=True)
    console.print(f"ties allowed: {'yes' if meta['allow_tie'] else 'no'}; judges' links (the studio serves "
                  "/judge/<token>; keep each link for its judge only):", soft_wrap=True)
    for j in study.judges():
        console.print(f"  {j.name}  /judge/{j.token}  {url.rstrip('/')}/judge/{j.token}", markup=False, soft_wrap=True)


@study_app.command("close")
def study_close(study: Path = typer.Argument(..., help="a study file (interplay study create)")) -> None:
    """Close a study: no more judgements are taken, and each judge's link shows the results
    (a running studio sees it at once)."""
    from interplay.studio.study import Study

    with bad_input(ValueError, OSError, sqlite3.Error):
        s = Study.open(study)
        was = s.closed()
        when = s.close()
    console.print(f"{study}: {'already closed' if was else 'closed'} {when}", markup=False, soft_wrap=True)


@study_app.command("results")
def study_results(
    study: Path = typer.Argument(..., help="a study file (interplay study create)"),
    out: Optional[Path] = typer.Option(None, help="write results.json, judgements.csv, verdicts.csv, results.csv and "
                                       "results.png here"),
) -> None:
    """Per criterion, over pairs (each pair's verdict: its judges' majority): win ratios with 95%
    intervals, binomial tests, agreement between judges; progress per judge."""
    from interplay.studio.study import Study
    from interplay.studio.study_stats import write_results

    with bad_input(ValueError, OSError, sqlite3.Error):
        s = Study.open(study)
        res = s.results()
    table = Table(title=f"{res.title}: A = {res.name_a}, B = {res.name_b}")
    for col in ("criterion", "pairs A", "pairs B", "tied", "n", "win ratio A", "95% interval", "p (binomial)", "",
                "alpha"):
        table.add_column(col, justify="left" if col == "criterion" else "right")
    for r in res.rows:
        interval = "-" if r.ci_low is None else f"{r.ci_low:.3f}-{r.ci_high:.3f}"
        table.add_row(r.name, str(r.wins_a), str(r.wins_b), str(r.ties), str(r.n), _num(r.win_ratio_a), interval,
                      _p(r.p_value), "*" if r.significant else "", _num(r.alpha))
    wide.print(table)
    console.print("Counts are pairs: a pair's verdict is the majority of its judges' picks; tied pairs are left "
                  "out of the test. * p < 0.05 (two-sided exact binomial test over the n pairs, per criterion; no "
                  "test pools the criteria); 95% Wilson interval; alpha: Krippendorff's alpha (nominal) between "
                  f"judges; over all (pair, criterion) units {_num(res.overall_alpha)}", soft_wrap=True)
    progress = Table(title="Progress")
    for col in ("judge", "judged", "total"):
        progress.add_column(col, justify="left" if col == "judge" else "right")
    for p in res.progress:
        progress.add_row(p["name"], str(p["judged"]), str(p["total"]))
    console.print(progress)
    if out is not None:
        with bad_input(OSError):
            paths = write_results(s, out)
        console.print(f"wrote {', '.join(p.name for p in paths.values())} to {out}", markup=False, soft_wrap=True)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _p(p: float | None) -> str:
    """A p-value: four decimals, or two significant digits below 0.001."""
    return "-" if p is None else f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"
