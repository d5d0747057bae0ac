"""Tables in the paper's layout (Table 1: user simulators; Table 2: recommenders) and
``interplay evaluate compare``: several evaluations side by side in one table and one plot."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from interplay.evaluation.agent_report import METRICS_FILE, plot_matchscores, plot_outcomes


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def user_table(results: list[dict], title: str = "User simulators (Table 1 layout)") -> Table:
    t = Table(title=title)
    for c in ("agent", "data", "SR", "ET", "FR", "BERTScore F1", "Dist-4", "words", "parse", "fallback", "human acc", "human bal.acc", "majority acc"):
        t.add_column(c, justify="left" if c in ("agent", "data") else "right")
    for m in results:
        r, s, h = m["replay"], m["single_turn"], m["human_view"]
        t.add_row(m["agent"], f"{Path(m['data']).name}/{m['split']}", _f(r.get("SR")), _f(r.get("ET")), _f(r.get("FR")),
                  _f((s.get("bertscore_f1") or {}).get("mean")), _f(s.get("dist4")), _f((s.get("words") or {}).get("mean"), 1),
                  _f(s.get("parse_rate")), _f(s.get("fallback_rate")), _f(h.get("accuracy")), _f(h.get("balanced_accuracy")), _f(h.get("majority_accuracy")))
    bs = {json.dumps(m["single_turn"].get("bertscore")) for m in results if m["single_turn"].get("bertscore")}
    t.caption = "parse: single-turn replies that gave a turn (protocol or fallback); fallback: read by the fallback rules. BERTScore: " + "; ".join(f"{json.loads(b)['model']} layer {json.loads(b)['num_layers']}" for b in bs) \
        if bs else None
    return t


def recommender_table(results: list[dict], title: str = "Recommenders (Table 2 layout)") -> Table:
    t = Table(title=title)
    for c in ("agent", "data", "n", "Recall@1", "Recall@10", "Recall@50", "MatchScore", "unmatched", "no rec.", "Dist-4", "words", "parse", "fallback"):
        t.add_column(c, justify="left" if c in ("agent", "data") else "right")
    for m in results:
        t.add_row(m["agent"], f"{Path(m['data']).name}/{m['split']}", str(m["n"]), _f(m["recall@1"]), _f(m["recall@10"]),
                  _f(m["recall@50"]), _f(m["matchscore"]["mean"]), str(m["unmatched_titles"]), str(m["no_recommendation"]),
                  _f(m["dist4"]), _f(m["words"]["mean"], 1), _f(m["parse_rate"]), _f(m.get("fallback_rate")))
    return t


def load_metrics(eval_dir: str | Path) -> dict:
    path = Path(eval_dir) / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not an evaluation folder (no {METRICS_FILE})")
    return json.loads(path.read_text())


def _task_rows(eval_dir: Path) -> dict[str, dict]:
    rows = {}
    for name in ("single_turn.jsonl", "human_view.jsonl", "recommendations.jsonl"):
        path = eval_dir / name
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[row["task_id"]] = row
    return rows


def turn_agreement(a: str | Path, b: str | Path) -> dict:
    """On the single-turn tasks two evaluations share (same records, same prompts), the share
    whose parsed action, and whose text, are identical: e.g. one agent on two backends."""
    ra, rb = _task_rows(Path(a)), _task_rows(Path(b))
    shared = sorted(set(ra) & set(rb))
    same_action = [t for t in shared if ra[t]["action"] == rb[t]["action"]]
    same_text = [t for t in shared if ra[t]["text"] == rb[t]["text"]]
    return {"shared_tasks": len(shared),
            "same_action": len(same_action) / len(shared) if shared else None,
            "same_text": len(same_text) / len(shared) if shared else None,
            "differing_actions": [{"task_id": t, "a": ra[t]["action"], "b": rb[t]["action"]}
                                  for t in shared if ra[t]["action"] != rb[t]["action"]]}


def compare(eval_dirs: list[str | Path], out: str | Path) -> dict:
    """One JSON, table and plot per kind (user / recommender) of the given evaluations."""
    import csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = [(Path(d), load_metrics(d)) for d in eval_dirs]
    users = [m for _, m in results if m["kind"] == "user"]
    recs = [(d, m) for d, m in results if m["kind"] == "recommender"]
    label = lambda m: f"{m['agent']} ({Path(m['data']).name}/{m['split']})"  # noqa: E731
    if users:
        plot_outcomes({label(m): m for m in users if m["replay"].get("episodes")}, out / "outcomes.png")
    if recs:
        by_agent = {}
        for d, m in recs:
            with (d / "recommendations.csv").open() as fh:
                by_agent[label(m)] = [{"matchscore": float(r["matchscore"])} for r in csv.DictReader(fh) if r["matchscore"]]
        plot_matchscores(by_agent, out / "matchscore.png")
    summary = {"user": users, "recommender": [m for _, m in recs], "sources": [str(d) for d, _ in results]}
    if len(results) == 2 and results[0][1]["kind"] == results[1][1]["kind"]:
        summary["turn_agreement"] = turn_agreement(results[0][0], results[1][0])
    (out / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
