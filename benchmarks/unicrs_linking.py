"""UniCRS entity-linking coverage on built data folders (the table of docs/unicrs.md), no training:
the knowledge graph of the first folder's catalogue, linked against each folder's records.

    python benchmarks/unicrs_linking.py data/redial:train data/redial:valid data/inspired:dev \
        --results-json docs/results/unicrs-linking.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def coverage_rows(specs: list[str]) -> list[dict]:
    """One row per ``FOLDER:SPLIT``: :func:`interplay.unicrs.linking.linking_coverage` with the KG of
    the first folder's catalogue (as ``train-unicrs`` builds it)."""
    from interplay.data.build import read_catalogue, read_records
    from interplay.unicrs.kg import build_kg
    from interplay.unicrs.linking import EntityLinker, linking_coverage

    first = Path(specs[0].split(":")[0])
    kg = build_kg(read_catalogue(first))
    rows = []
    for spec in specs:
        folder, _, split = spec.partition(":")
        if not split:
            raise SystemExit(f"{spec}: expected FOLDER:SPLIT")
        cov = linking_coverage(EntityLinker(kg, read_catalogue(folder)), read_records(folder, split))
        kinds = cov["linked_by_kind"]
        rows.append({"data": f"{Path(folder).name} {split} ({cov['turns']:,} turns)",
                     "turns_with_entity": cov["turns_with_entity"],
                     "titles_linked": {"value": cov["marked_titles_linked"], "ci95": None, "n": cov["marked_titles"]},
                     "entities_per_turn": cov["entities_per_turn"],
                     "by_kind": " / ".join(f"{kinds.get(k, 0.0):.2f}" for k in ("item", "genre", "attribute")),
                     "checkpoint": "-", "threshold": None})
        print(f"{spec}: {cov}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="+", help="FOLDER:SPLIT of a built data folder (the first gives the catalogue)")
    ap.add_argument("--results-json", help="write the docs result file (interplay.results_docs) here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rows = coverage_rows(args.specs)
    if args.results_json:
        from interplay.results_docs import Column, ResultTable

        table = ResultTable(
            title="UniCRS entity-linking coverage", measured=dt.date.today(),
            command="python benchmarks/unicrs_linking.py " + " ".join(args.specs)
                    + f" --results-json {args.results_json}",
            data=", ".join(sorted({s.split(':')[0] for s in args.specs})), split=", ".join(args.specs),
            source="interplay.unicrs.linking.linking_coverage (no run folder)",
            columns=[Column(key="data", header="data"),
                     Column(key="turns_with_entity", header="turns with an entity", format=".3f"),
                     Column(key="titles_linked", header="marked titles linked (of n)", format=".3f", show_n=True),
                     Column(key="entities_per_turn", header="entities per turn", format=".2f"),
                     Column(key="by_kind", header="linked: items / genres / tags")],
            rows=rows,
            notes=["Items link through Catalogue.resolve (exact, then the guarded fuzzy match); the knowledge "
                   "graph is the first folder's catalogue, as interplay train-unicrs builds it."])
        Path(args.results_json).write_text(table.model_dump_json(indent=1) + "\n")
        print(f"wrote {args.results_json}")


if __name__ == "__main__":
    main()
