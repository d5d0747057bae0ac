"""Which retrieval gives a recommender its candidates (the table of docs/decisions.md): at every
turn of a split where the human recommended the target (the turns ``evaluate recommender`` scores),
is the target's catalogue id among the top 10 / top 50 retrieved items? Needs the MatchScore
encoder (``interplay matchscore train``).

    python benchmarks/candidate_retrieval.py --data data/redial --split valid \
        --results-json docs/results/candidate-retrieval.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (row label, space, prior weight); prior None: popularity alone
CONFIGS = [("MiniLM text space, user's words vs item texts", "text", 0.0),
           ("MatchScore item space (query projected by the BPR item encoder)", "item", 0.0),
           ("popularity alone", "text", None),
           ("text + 0.2 x popularity prior", "text", 0.2),
           ("text + 0.3 x popularity prior (the default)", "text", 0.3),
           ("text + 0.4 x popularity prior", "text", 0.4)]


def measure(data: str, split: str, ks: tuple[int, ...] = (10, 50)) -> tuple[list[dict], int]:
    """One row per configuration: hits@k over the scored turns (ids compared), and the turn count."""
    from interplay.candidates import CandidateRetriever
    from interplay.data.build import read_catalogue, read_records
    from interplay.evaluation.tasks import recommender_turn_tasks

    catalogue = read_catalogue(data)
    tasks, _ = recommender_turn_tasks(read_records(data, split))
    depth = max(ks)
    rows = []
    for label, space, weight in CONFIGS:
        r = CandidateRetriever.for_data(data, catalogue, space=space, prior_weight=1.0 if weight is None else weight)
        if weight is None:  # popularity alone: the train split's prior, no similarity term
            r.matrix = r.matrix * 0.0
        hits = {k: 0 for k in ks}
        for task in tasks:
            ids = [it.item_id for t in r.retrieve(task.observation.history, depth)
                   if (it := catalogue.resolve(t)) is not None]
            for k in ks:
                hits[k] += task.extra["target_id"] in ids[:k]
        rows.append({"retrieval": label, **{f"recall_at_{k}": hits[k] / len(tasks) for k in ks},
                     "turns": len(tasks), "checkpoint": "-", "threshold": None})
        print(label, {k: round(hits[k] / len(tasks), 3) for k in ks})
    return rows, len(tasks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/redial")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--results-json", help="write the docs result file (interplay.results_docs) here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    rows, n = measure(args.data, args.split)
    if args.results_json:
        from interplay.results_docs import Column, ResultTable

        cmd = f"python benchmarks/candidate_retrieval.py --data {args.data} --split {args.split} " \
              f"--results-json {args.results_json}"
        table = ResultTable(
            title="Candidate retrieval: the target among the top k", command=cmd, data=args.data,
            split=args.split, source="interplay.candidates.CandidateRetriever (no run folder)",
            measured=dt.date.today(),
            columns=[Column(key="retrieval", header="retrieval"),
                     Column(key="recall_at_10", header="Recall@10", format=".3f"),
                     Column(key="recall_at_50", header="Recall@50", format=".3f")],
            rows=rows,
            notes=[f"n: the {n} turns of the split where the human recommended the target (the turns "
                   "'evaluate recommender' scores); a retrieved title counts when it resolves to the target's "
                   "catalogue id. Titles already named in the dialogue are never retrieved."])
        Path(args.results_json).write_text(table.model_dump_json(indent=1) + "\n")
        print(f"wrote {args.results_json}")


if __name__ == "__main__":
    main()
