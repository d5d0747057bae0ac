"""Two ``sim_throughput.py --json`` results of the same command on two revisions, run back to
back on one machine, as one docs result file: each mode's wall time and its share of the
batch-saturated decode limit measured in the same run (the share is what a refactor must keep).

    (cd ../before && PYTHONPATH=. python benchmarks/sim_throughput.py --modes bc --episodes 16 --max-turns 6 \\
        --decision-records 0 --json /tmp/before.json)
    python benchmarks/sim_throughput.py --modes bc --episodes 16 --max-turns 6 --decision-records 0 --json /tmp/after.json
    python benchmarks/throughput_before_after.py /tmp/before.json /tmp/after.json --before-rev 8cfc28b \\
        --title "..." --results-json docs/results/NAME.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path


def row(label: str, result: dict) -> dict:
    """One table row from a sim_throughput JSON result (modes b and c where present), with the
    content hash of the model its user agent ran."""
    from interplay.evaluation.fidelity_results import agent_checkpoint

    modes = result["modes"]
    out: dict = {"code": label, "decode_limit_tok_s": round(result["decode_limit_tok_s"], 1),
                 "checkpoint": agent_checkpoint(result["args"]["user"]), "threshold": None}
    for m in ("b", "c"):
        r = modes.get(m) or {}
        out[f"{m}_wall_s"] = r.get("wall_s")
        out[f"{m}_share"] = None if r.get("share_of_decode_limit") is None else round(r["share_of_decode_limit"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--before-rev", required=True, help="the revision the first result ran")
    ap.add_argument("--title", default="sim_throughput before and after, back to back")
    ap.add_argument("--command", default="python benchmarks/sim_throughput.py --modes bc --episodes 16 --max-turns 6 "
                                         "--decision-records 0 --json FILE (each revision)")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--results-json", type=Path, required=True)
    args = ap.parse_args()
    from interplay.results_docs import Column, ResultTable

    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    for name, r in (("before", before), ("after", after)):
        if r["args"] != {**before["args"], "json": r["args"]["json"]}:
            raise SystemExit(f"{name}: not the same sim_throughput command as {args.before}")
    a = before["args"]
    table = ResultTable(
        title=args.title, command=args.command, data=a["data"], split=a["split"],
        source=f"{args.before}, {args.after}", measured=dt.date.today(),
        columns=[Column(key="code", header="code"), Column(key="b_wall_s", header="(b) batched wall s", format=".1f"),
                 Column(key="c_wall_s", header="(c) + KV reuse wall s", format=".1f"),
                 Column(key="decode_limit_tok_s", header="decode limit tok/s", format=".1f"),
                 Column(key="b_share", header="(b) share of limit", format=".2f"),
                 Column(key="c_share", header="(c) share of limit", format=".2f")],
        rows=[row(f"before (`{args.before_rev}`)", before), row("after", after)],
        notes=[f"n: {a['episodes']} episodes of at most {a['max_turns']} turns per mode, {a['user']} / "
               f"{a['recommender']} agents on the default model; one run per revision, back to back on one machine "
               "(the before revision from a git worktree).", *args.note])
    args.results_json.write_text(table.model_dump_json(indent=1) + "\n")
    print(f"wrote {args.results_json}")


if __name__ == "__main__":
    main()
