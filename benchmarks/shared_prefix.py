"""How many first-turn prompt tokens the episodes of a role share, per prompt layout (the table of
docs/performance.md): the longest token prefix common to every episode's first prompt of the role,
for the prompted agents (``llm``, ``zero-shot``: the default model's chat template) and the
fine-tuned serialisation (``usersim`` / ``recsim``), in the layout before issue 35 (1) and the
current one (2, the role's instructions and actions first). A prefix every episode shares can be
prefilled once and its KV kept for all of them. Tokenization only: seconds on a CPU.

    python benchmarks/shared_prefix.py --data data/redial --split test \
        --results-json docs/results/shared-prefix.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the token prefix all ``rows`` share."""
    first = rows[0]
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != first[i] for r in rows):
            return i
    return n


def first_prompts(records, role, layout: int, fine_tuned: bool, tokenizer, sees_persona: bool) -> list[list[int]]:
    """Token ids of each record's first prompt of ``role`` (no turn spoken yet)."""
    from interplay.prompting import build_messages, render_prompt, system_text
    from interplay.training.serialize import inference_prompt
    from interplay.training.tokenize import record_view

    out = []
    for r in records:
        view = record_view(r, role, sees_persona)
        if view is None:
            continue
        if fine_tuned:
            text = inference_prompt(role, view, [], layout=layout)
        else:
            messages = build_messages(role, view, [])
            messages[0]["content"] = system_text(role, view, layout=layout)
            text = render_prompt(tokenizer, messages)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def measure(data: str, split: str) -> list[dict]:
    from transformers import AutoTokenizer

    from interplay.backends.default_model import default_model_path
    from interplay.data.build import read_records
    from interplay.protocol import Role
    from interplay.training.tokenize import add_special_tokens

    records = read_records(data, split)
    tok = AutoTokenizer.from_pretrained(default_model_path())
    add_special_tokens(tok)  # the fine-tuned checkpoints' tokenizer
    rows = []
    for fine_tuned, sees_persona, agents in ((False, False, "llm / zero-shot"), (False, True, "zero-shot (sees persona)"),
                                              (True, False, "usersim / recsim")):
        for role in Role:
            if sees_persona and role is Role.USER:
                continue
            by_layout = {}
            for layout in (1, 2):
                prompts = first_prompts(records, role, layout, fine_tuned, tok, sees_persona)
                by_layout[layout] = (common_prefix(prompts), statistics.median(len(p) for p in prompts), len(prompts))
            (before, _, n), (after, median, _) = by_layout[1], by_layout[2]
            rows.append({"agents": agents, "role": role.value, "before": before, "after": after,
                         "median_prompt": int(median), "episodes": n, "checkpoint": "-", "threshold": None})
            print(rows[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/redial")
    ap.add_argument("--split", default="test")
    ap.add_argument("--results-json", help="write the docs result file (interplay.results_docs) here")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = measure(args.data, args.split)
    if args.results_json:
        from interplay.results_docs import Column, ResultTable

        cmd = f"python benchmarks/shared_prefix.py --data {args.data} --split {args.split} " \
              f"--results-json {args.results_json}"
        table = ResultTable(
            title="First-turn prompt tokens every episode of a role shares", command=cmd, data=args.data,
            split=args.split, source="interplay.prompting / interplay.training.serialize (no run folder)",
            measured=dt.date.today(),
            columns=[Column(key="agents", header="agents"), Column(key="role", header="role"),
                     Column(key="before", header="shared, layout 1 (before)", format="d"),
                     Column(key="after", header="shared, layout 2 (now)", format="d"),
                     Column(key="median_prompt", header="median first prompt", format="d"),
                     Column(key="episodes", header="episodes", format="d")],
            rows=rows,
            notes=["Tokens of the default model's tokenizer (with the project's added tokens). The fine-tuned "
                   "checkpoints record their layout (prompt_layout in interplay_training.json; none recorded: 1) "
                   "and are prompted in it; the prompted agents use layout 2 from issue 35 on."])
        Path(args.results_json).write_text(table.model_dump_json(indent=1) + "\n")
        print(f"wrote {args.results_json}")


if __name__ == "__main__":
    main()
