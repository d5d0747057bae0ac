"""``interplay docs``: render the docs' tables of figures from their result files (``docs/results``)."""

from __future__ import annotations

from pathlib import Path

from typing import Optional

import typer

from interplay.cli.app import app, bad_input, console

docs_app = typer.Typer(no_args_is_help=True, help="Docs: tables of figures rendered from docs/results/*.json.")
app.add_typer(docs_app, name="docs")


@docs_app.command("render")
def docs_render(
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if a block differs from its file"),
    docs: Path = typer.Option(Path("docs"), help="the docs folder whose *.md hold '<!-- results: NAME -->' blocks"),
    results: Path = typer.Option(Path("docs/results"), help="the folder of result files NAME.json"),
    readme: Path = typer.Option(Path("README.md"), help="a README whose blocks are rendered too (skipped if absent)"),
) -> None:
    """Re-render every '<!-- results: NAME -->' block from docs/results/NAME.json (--check: list stale ones)."""
    from interplay.results_docs import ResultsError, render_docs

    with bad_input(ResultsError, OSError):
        if not docs.is_dir():
            raise ResultsError(f"{docs}: no docs folder (run from the repository root or give --docs)")
        stale = render_docs(docs, results, check=check, readme=readme if readme.is_file() else None)
    if check and stale:
        console.print(f"[red]stale:[/red] {len(stale)} results block(s) differ from their result files "
                      "(run `interplay docs render`):", soft_wrap=True)
        for block in stale:
            console.print(f"  {block}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    if check:
        console.print("docs: every results block matches its result file")
    else:
        console.print(f"docs: {len(stale)} results block(s) rewritten" +
                      "".join(f"\n  {b}" for b in stale), markup=False, soft_wrap=True)


@docs_app.command("from-scorecard")
def docs_from_scorecard(
    folder: Path = typer.Argument(..., help="a folder written by 'interplay evaluate fidelity' (scorecard.json)"),
    name: str = typer.Option(..., help="result file stem: writes NAME-decisions.json, NAME-probes.json, NAME-replay.json"),
    command: str = typer.Option(..., help="the exact command that produced the scorecard"),
    results: Path = typer.Option(Path("docs/results"), help="the folder of result files"),
    note: list[str] = typer.Option([], help="a sentence added to every table's notes (repeat), e.g. what a "
                                   "figure was given or trained on, or a part not run yet"),
    agent: list[str] = typer.Option([], help="only this agent's rows (repeat; in this order): a comparison of a few"),
) -> None:
    """Result files from a fidelity scorecard, each row with its agent's checkpoint hash and threshold."""
    from interplay.evaluation.fidelity_results import write_scorecard_results
    from interplay.results_docs import ResultsError

    with bad_input(ResultsError, OSError, ValueError):
        if not (folder / "scorecard.json").is_file():
            raise ResultsError(f"{folder / 'scorecard.json'}: missing (run 'interplay evaluate fidelity' first)")
        paths = write_scorecard_results(folder, name, command, results, notes=note, agents=agent or None)
    for p in paths:
        console.print(f"wrote {p}", markup=False)


@docs_app.command("from-recommenders")
def docs_from_recommenders(
    folders: list[Path] = typer.Argument(..., help="finished 'interplay evaluate recommender' folders, one row each"),
    name: str = typer.Option(..., help="result file stem: writes NAME.json"),
    command: str = typer.Option(..., help="the exact command(s) that produced the folders"),
    results: Path = typer.Option(Path("docs/results"), help="the folder of result files"),
    title: str = typer.Option("", help="the table's title (default: from the data and split)"),
    note: list[str] = typer.Option([], help="a sentence added to the table's notes (repeat)"),
) -> None:
    """A result file from recommender evaluations: Recall@k and MatchScore with dialogue-cluster
    intervals, each row with its agent's checkpoint hash."""
    from interplay.evaluation.recommender_results import write_recommender_results
    from interplay.results_docs import ResultsError

    with bad_input(ResultsError, OSError, ValueError):
        path = write_recommender_results(folders, name, command, results, notes=note, title=title or None)
    console.print(f"wrote {path}", markup=False)


@docs_app.command("from-runs")
def docs_from_runs(
    runs: list[Path] = typer.Argument(..., help="finished 'interplay simulate' run folders on one data split, one row each"),
    name: str = typer.Option(..., help="result file stem: writes NAME.json (outcomes) and NAME-behaviour.json"),
    command: str = typer.Option(..., help="the exact command(s) that produced the runs"),
    results: Path = typer.Option(Path("docs/results"), help="the folder of result files"),
    note: list[str] = typer.Option([], help="a sentence added to the tables' notes (repeat)"),
    people: Optional[str] = typer.Option(None, help="DATA:SPLIT: compare with every human dialogue of this split "
                                         "(runs on data without human dialogues, e.g. the demo set)"),
) -> None:
    """Result files from free simulations on a data split: SR / ET / FR, turns and behaviour
    figures per role beside the human dialogues of the same records, with intervals over dialogues."""
    from interplay.evaluation.simulation_results import write_simulation_results
    from interplay.results_docs import ResultsError

    with bad_input(ResultsError, OSError, ValueError):
        if people is not None and ":" not in people:
            raise ValueError(f"--people {people!r}: give DATA:SPLIT (e.g. data/redial:test)")
        paths = write_simulation_results(runs, name, command, results, notes=note,
                                         people=tuple(people.rsplit(":", 1)) if people else None)
    for p in paths:
        console.print(f"wrote {p}", markup=False)
