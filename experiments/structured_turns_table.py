"""Markdown tables of the evaluations written by ``experiments/structured_turns_eval.sh``.

    python experiments/structured_turns_table.py runs/eval14
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, digits: int = 3) -> str:
    return "" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def recommender_rows(root: Path) -> list[str]:
    head = ("| evaluation | n | decoding | forced | parse | fallback | recommended | unmatched titles | "
            "Recall@1 | Recall@10 | Recall@50 | MatchScore |")
    rows = [head, "|" + " --- |" * (head.count("|") - 1)]
    for p in sorted(root.glob("rec-*/metrics.json")):
        m = json.loads(p.read_text())
        dec = ", ".join(f"{k} {v}" for k, v in (m.get("decoding") or {}).items())
        rows.append(f"| {p.parent.name} | {m['n']} | {dec} | {m.get('forced_recommend')} | {_f(m['parse_rate'])} | "
                    f"{_f(m['fallback_rate'])} | {m['recommended']} | {m['unmatched_titles']} | {_f(m['recall@1'])} | "
                    f"{_f(m['recall@10'])} | {_f(m['recall@50'])} | {_f(m['matchscore'].get('mean'))} |")
    return rows


def user_rows(root: Path) -> list[str]:
    head = ("| evaluation | episodes | SR | ET | FR | parse | fallback | single-turn parse | BERTScore F1 | Dist-4 | "
            "human items | agent accepts | balanced accuracy | accuracy (majority) |")
    rows = [head, "|" + " --- |" * (head.count("|") - 1)]
    for p in sorted(root.glob("user-*/metrics.json")):
        m = json.loads(p.read_text())
        r, s, h = m["replay"], m["single_turn"], m["human_view"]
        rows.append(f"| {p.parent.name} | {r['episodes']} | {_f(r.get('SR'))} | {_f(r.get('ET'))} | {_f(r.get('FR'))} | "
                    f"{_f(r.get('user_parse_rate'))} | {_f(r.get('user_fallback_rate'))} | {_f(s.get('parse_rate'))} | "
                    f"{_f((s.get('bertscore_f1') or {}).get('mean'))} | {_f(s.get('dist4'))} | {h.get('n')} | "
                    f"{h.get('agent_accepts')} | {_f(h.get('balanced_accuracy'))} | "
                    f"{_f(h.get('accuracy'))} ({_f(h.get('majority_accuracy'))}) |")
    return rows


def main(root: str) -> None:
    path = Path(root)
    print("\n".join(recommender_rows(path)) + "\n\n" + "\n".join(user_rows(path)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/eval14")
