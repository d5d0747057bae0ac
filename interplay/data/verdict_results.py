"""A built data folder's human verdicts per slice as a docs result file (:mod:`interplay.results_docs`):
for each split, the items people judged (accepted / rejected / did not say) per decision slice, the
verdicts no recommender turn names (unplaced), and the items the catalogue lacks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from interplay.data.schema import DECISION_SLICES
from interplay.results_docs import Column, ResultTable


def verdict_table(folder: str | Path, stats: dict, command: str, splits: list[str] | None = None,
                  measured: dt.date | None = None) -> ResultTable:
    """One row per split and slice (``stats``: :func:`interplay.data.build.dataset_stats` of ``folder``)."""
    chosen = splits or list(stats)
    unknown = [s for s in chosen if s not in stats]
    if unknown:
        raise ValueError(f"{folder}: no split {', '.join(unknown)} (has {', '.join(stats)})")
    rows = []
    for split in chosen:
        d = stats[split]["decisions"]
        for slice_ in DECISION_SLICES:
            v = d.get(slice_) or {"accept": 0, "reject": 0, "did_not_say": 0}
            rows.append({"split": split, "slice": slice_, "accept": v["accept"], "reject": v["reject"],
                         "judged": v["accept"] + v["reject"], "did_not_say": v["did_not_say"],
                         "checkpoint": "-", "threshold": None})
        judged = sum(r["judged"] for r in rows if r["split"] == split)
        rows.append({"split": split, "slice": "all judged", "accept": sum(r["accept"] for r in rows if r["split"] == split),
                     "reject": sum(r["reject"] for r in rows if r["split"] == split), "judged": judged,
                     "did_not_say": sum(r["did_not_say"] for r in rows if r["split"] == split and r["slice"] != "all judged"),
                     "checkpoint": "-", "threshold": None})
    notes = [f"{split}: {stats[split]['records']} dialogues; {stats[split]['decisions'].get('unplaced', 0)} verdicts on "
             f"items no recommender turn names (counted, not judged); {stats[split]['items']['distinct']} distinct items "
             f"named, {stats[split]['items']['unmatched']} not in the catalogue (ids '<source>:...')."
             for split in chosen]
    return ResultTable(
        title=f"Human verdicts per slice: {folder}", command=command, data=str(folder), split=", ".join(chosen),
        source=f"{folder} (records' decisions, interplay.data.build.dataset_stats)", measured=measured or dt.date.today(),
        columns=[Column(key="split", header="split"), Column(key="slice", header="slice"),
                 Column(key="accept", header="accepted", format="d"), Column(key="reject", header="rejected", format="d"),
                 Column(key="judged", header="judged", format="d"),
                 Column(key="did_not_say", header="did not say", format="d")],
        rows=rows, notes=notes)
