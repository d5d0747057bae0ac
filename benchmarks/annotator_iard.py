"""How well the rule-based action annotator agrees with IARD's gold dialogue acts.

    python benchmarks/annotator_iard.py [--data ../shared/data] [--annotator rule|llm|llm:MODEL] [--limit N]

Each IARD utterance gets a gold action from its gold intents (mapping table in
interplay/data/annotate.py) and a predicted action from the annotator, which sees the utterance
text, the titles mentioned in it (IARD's TITLE slots, as ReDial's @-mentions give them in the
loaders) and the dialogue so far (the rules) or the previous utterance (the LLM annotator). Prints per-action precision / recall / F1 and accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from interplay.data.annotate import iard_action, make_annotator
from interplay.protocol import Action, Role


def evaluate(path: Path, annotator, limit: int | None = None) -> tuple[list[str], list[str], int]:
    """Gold and predicted actions per utterance (whole conversations, up to ``limit`` conversations),
    and how many predictions fell back to the rules."""
    gold, pred, fallbacks = [], [], 0
    conversations = json.loads(path.read_text())[:limit]
    for conv in track(conversations, description="annotating", transient=True):
        turns = []
        for utt in conv["conversation"]:
            role = Role.USER if utt["participant"] == "USER" else Role.RECOMMENDER
            titles = [v[1] for a in utt["dialogue_acts"] for v in a["slot_values"] if v[0] == "TITLE" and v[1]]
            turns.append((role, utt["utterance"], titles))
            gold.append(iard_action(utt["participant"], [a["intent"] for a in utt["dialogue_acts"]]).value)
        for action, source in annotator.annotate_dialogue(turns):
            pred.append(action.value)
            fallbacks += source.endswith("fallback")
    return gold, pred, fallbacks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--annotator", default="rule", help="rule | llm | llm:MODEL")
    ap.add_argument("--limit", type=int, default=None, help="first N conversations only")
    args = ap.parse_args()
    gold, pred, fallbacks = evaluate(Path(args.data) / "iard" / "iard_gold.json", make_annotator(args.annotator),
                                     args.limit)
    labels = [a.value for a in Action]
    p, r, f, n = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    table = Table(title=f"Annotator '{args.annotator}' vs IARD gold acts ({len(gold)} utterances)")
    for col in ("action", "gold n", "precision", "recall", "F1"):
        table.add_column(col, justify="right" if col != "action" else "left")
    for i, lab in enumerate(labels):
        table.add_row(lab, str(n[i]), f"{p[i]:.3f}", f"{r[i]:.3f}", f"{f[i]:.3f}")
    console = Console()
    console.print(table)
    console.print(f"accuracy {accuracy_score(gold, pred):.3f}; fell back to the rules: {fallbacks}")
    cm = confusion_matrix(gold, pred, labels=labels)
    console.print("confusion (rows gold, columns predicted, order " + ", ".join(labels) + "):")
    for lab, row in zip(labels, cm):
        console.print(f"  {lab:>14} " + " ".join(f"{v:4d}" for v in row))


if __name__ == "__main__":
    main()
