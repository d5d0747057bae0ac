"""The INSPIRED reaction annotator (``interplay.data.reactions.reaction_of``) against the 217
hand-labelled reactions of INSPIRED dev (``tests/fixtures/inspired_reactions_gold.tsv``): accuracy
on the rows read while the rules were written, and on the rows labelled after they were frozen.

    python benchmarks/inspired_reactions.py --data data/inspired --results-json docs/results/inspired-reactions.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "tests" / "fixtures" / "inspired_reactions_gold.tsv"
HOW = {"rules": "labelled first; the rules were written while reading them (optimistic)",
       "held-out": "labelled after the rules were frozen (the honest figure)"}


def measure(data: str | Path, gold: Path = GOLD) -> dict[str, dict]:
    """Per gold set: rows, labels counted, rows the annotator gets right, and its misses by label."""
    from interplay.data.build import read_records
    from interplay.data.reactions import reaction_of

    records = {r.id: r for r in read_records(data, "dev")}
    rows = [line.split("\t") for line in gold.read_text().splitlines() if line and not line.startswith("#")][1:]
    out: dict[str, dict] = {}
    for i, (rid, turn, label, part) in enumerate(rows, start=2):
        if rid not in records:
            raise SystemExit(f"{gold}: row {i}: record {rid!r} is not in {data} (build INSPIRED dev first)")
        rec, k = records[rid], int(turn)
        got = reaction_of(rec.turns[k + 1].text)
        s = out.setdefault(part, {"n": 0, "labels": Counter(), "right": 0, "found": Counter()})
        s["n"] += 1
        s["labels"][label] += 1
        s["right"] += got == label
        s["found"][label] += got == label
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/inspired", help="the built INSPIRED folder")
    ap.add_argument("--results-json", help="write the docs result file (interplay.results_docs) here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    parts = measure(args.data)
    for part, s in parts.items():
        print(part, s["n"], dict(s["labels"]), "right", s["right"], "found", dict(s["found"]))
    if args.results_json:
        from scipy.stats import binomtest

        from interplay.results_docs import Column, ResultTable

        rows = []
        for part in ("rules", "held-out"):
            s = parts[part]
            ci = binomtest(s["right"], s["n"]).proportion_ci(method="wilson")
            lab = s["labels"]
            rows.append({"gold": f"{s['n']} ({lab['accept']} accept, {lab['reject']} reject, {lab['none']} none)",
                         "accuracy": {"value": s["right"] / s["n"], "ci95": [ci.low, ci.high], "n": s["n"]},
                         "found": f"{s['found']['accept']} of {lab['accept']} / {s['found']['reject']} of {lab['reject']}",
                         "how": HOW[part], "checkpoint": "-", "threshold": None})
        table = ResultTable(
            title="INSPIRED reaction annotator against the hand-labelled reactions of dev",
            command=f"python benchmarks/inspired_reactions.py --data {args.data} --results-json {args.results_json}",
            data=str(args.data), split="dev", source="tests/fixtures/inspired_reactions_gold.tsv",
            measured=dt.date.today(),
            columns=[Column(key="gold", header="gold rows"),
                     Column(key="accuracy", header="accuracy (n)", format=".3f", show_n=True),
                     Column(key="found", header="accepts / rejects found"), Column(key="how", header="how they were labelled")],
            rows=rows, notes=["Intervals: Wilson 95% over rows. tests/test_fidelity.py asserts the counts."])
        Path(args.results_json).write_text(table.model_dump_json(indent=1) + "\n")
        print(f"wrote {args.results_json}")


if __name__ == "__main__":
    main()
