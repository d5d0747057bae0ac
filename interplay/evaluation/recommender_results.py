"""Finished ``interplay evaluate recommender`` folders as one docs result file
(:mod:`interplay.results_docs`): Recall@k and MatchScore per agent, with 95% intervals from a
dialogue-cluster bootstrap (the scored turns of one dialogue are resampled together), each row with
its agent's checkpoint content hash."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from interplay.metrics.fidelity import paired_bootstrap
from interplay.results_docs import Column, ResultsError, ResultTable
from interplay.run_checkpoints import recorded_checkpoint


def _mean(values):
    import numpy as np

    return float(np.mean(values)) if len(values) else float("nan")


def _figure(rows: list[dict], key: str) -> dict | None:
    """Mean of ``key`` over the rows that have it, with its dialogue-cluster interval and n."""
    have = sorted((r for r in rows if r.get(key) is not None), key=lambda r: r["task_id"])
    if not have:
        return None
    values = [float(r[key]) for r in have]
    ci = paired_bootstrap(_mean, values, clusters=[r["record_id"] for r in have])
    return {"value": sum(values) / len(values), "ci95": list(ci) if ci else None, "n": len(values)}


def _metrics(folder: Path) -> dict:
    """A finished recommender evaluation's ``metrics.json`` (ResultsError naming the file otherwise)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise ResultsError(f"{path}: missing (run 'interplay evaluate recommender' to the end first)")
    metrics = json.loads(path.read_text())
    if metrics.get("kind") != "recommender":
        raise ResultsError(f"{path}: kind {metrics.get('kind')!r}, expected a recommender evaluation")
    return metrics


def evaluation_row(folder: Path, metrics: dict | None = None) -> dict:
    """One table row from an evaluation folder (its ``metrics.json``, read unless given, and scored rows)."""
    folder = Path(folder)
    metrics = metrics if metrics is not None else _metrics(folder)
    rows = scored_rows(folder)
    ranked = bool(metrics.get("recall@10") is not None)
    depth = metrics.get("rank_depth") or 0
    return {
        "agent": metrics["agent"],
        "mode": "forced" if metrics.get("forced_recommend") else "free",
        "turns": f"{len(rows)} ({len({r['record_id'] for r in rows})})",
        "recommended": metrics["recommended"],
        "recall_at_1": _figure(rows, "recall_at_1"),
        "recall_at_10": _figure(rows, "recall_at_10") if ranked and depth >= 10 else None,
        "recall_at_50": _figure(rows, "recall_at_50") if ranked and depth >= 50 else None,
        "matchscore": _figure(rows, "matchscore"),
        "checkpoint": recorded_checkpoint(folder, metrics["agent"]),
        "threshold": None,
    }


def scored_rows(folder: Path) -> list[dict]:
    """The evaluation's scored rows (``recommendations.csv`` as written by the report)."""
    import csv

    path = Path(folder) / "recommendations.csv"
    if not path.is_file():
        raise ResultsError(f"{path}: missing (run 'interplay evaluate recommender' to the end first)")
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            for key in ("task_id", "record_id"):
                if not r.get(key):
                    raise ResultsError(f"{path}:{i}: field {key!r} is empty")
            row = {"task_id": r["task_id"], "record_id": r["record_id"]}
            for key in ("recall_at_1", "recall_at_10", "recall_at_50", "matchscore"):
                v = r.get(key, "")
                try:
                    row[key] = float(v) if v not in ("", "None") else None
                except ValueError:
                    raise ResultsError(f"{path}:{i}: field {key!r} is not a number: {v!r}") from None
            out.append(row)
    return out


def recommender_results(folders: list[Path], command: str, measured: dt.date | None = None,
                        notes: list[str] | None = None, title: str | None = None) -> ResultTable:
    """One table over evaluation folders of the same data and split (refused otherwise)."""
    if not folders:
        raise ResultsError("no evaluation folders given")
    metas = [_metrics(Path(f)) for f in folders]
    rows = [evaluation_row(Path(f), m) for f, m in zip(folders, metas)]
    sets = {(m["data"], m["split"]) for m in metas}
    if len(sets) != 1:
        raise ResultsError(f"the folders evaluate different data or splits: {sorted(sets)}")
    data, split = sets.pop()
    return ResultTable(
        title=title or f"Recommenders at the recorded recommendations of {Path(data).name} {split}",
        command=command, data=data, split=split, measured=measured or dt.date.today(),
        source=", ".join(str(Path(f) / "metrics.json") for f in folders),
        columns=[Column(key="agent", header="recommender"), Column(key="mode", header="mode"),
                 Column(key="turns", header="turns (dialogues)"), Column(key="recommended", header="recommended", format="d"),
                 Column(key="recall_at_1", header="Recall@1", format=".3f"),
                 Column(key="recall_at_10", header="Recall@10", format=".3f"),
                 Column(key="recall_at_50", header="Recall@50", format=".3f"),
                 Column(key="matchscore", header="MatchScore (n)", format=".3f", show_n=True)],
        rows=rows,
        notes=["Items compared by catalogue id (each named title resolved once). Intervals: 95% bootstrap over "
               "dialogues (the scored turns of one dialogue resampled together); '-': the agent gives no ranking "
               "that deep. MatchScore is over the turns whose target the item encoder knows (n).", *(notes or [])])


def write_recommender_results(folders: list[Path], name: str, command: str, results: Path = Path("docs/results"),
                              notes: list[str] | None = None, title: str | None = None) -> Path:
    """Write ``results/NAME.json`` from evaluation folders; returns its path."""
    table = recommender_results(folders, command, notes=notes, title=title)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(table.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return path


__all__ = ["evaluation_row", "recommender_results", "scored_rows", "write_recommender_results"]
