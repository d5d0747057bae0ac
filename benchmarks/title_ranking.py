"""Catalogue ranking by an LLM recommender: beam search vs exact branch and bound, side by side.

    python benchmarks/title_ranking.py --data data/redial --split test --agent zero-shot \
        --records 5 --beams 50,100 --exact-records 1

For the first ``--records`` records that recommend their target, the recommender (a local
transformers agent, ``zero-shot`` or ``recsim:CKPT``) writes its forced recommendation turn as
``evaluate recommender`` does, and the catalogue is ranked at that turn's first ``<movie_title>``
(top ``--k``) by :func:`~interplay.backends.title_ranking.beam_rank_titles` for each beam width
and, for the first ``--exact-records``, by the exact :func:`~interplay.backends.title_ranking.rank_titles`.
Prints per record and method: seconds, nodes expanded, forward passes, whether the result is
certified exact, and the overlap of its top 10 / top k with the exact ones. Writes the rows as
JSON lines to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/redial")
    ap.add_argument("--split", default="test")
    ap.add_argument("--agent", default="zero-shot")
    ap.add_argument("--records", type=int, default=5)
    ap.add_argument("--beams", default="50,100")
    ap.add_argument("--exact-records", type=int, default=1)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from interplay.agent_specs import AgentContext, AgentSpec, build_agent, model_of, sees_persona
    from interplay.backends.base import GenerationParams
    from interplay.backends.title_ranking import TitleTrie, beam_rank_titles, rank_titles
    from interplay.backends.transformers_backend import TransformersBackend
    from interplay.data.build import read_catalogue, read_records
    from interplay.evaluation.tasks import recommender_turn_tasks
    from interplay.protocol import TITLE_OPEN, Role

    records, catalogue = read_records(args.data, args.split), read_catalogue(args.data)
    tasks, _ = recommender_turn_tasks(records, sees_persona(args.agent), force_recommend=True)
    tasks = tasks[: args.records]
    spec = AgentSpec.parse(args.agent)
    backend = TransformersBackend(model_of(spec), dtype=args.dtype)
    agent = build_agent(spec, AgentContext(Role.RECOMMENDER, spec.arg, catalogue, 0, GenerationParams(),
                                           backend, backend.tokenizer))
    t0 = time.perf_counter()
    trie = TitleTrie(backend.tokenizer, catalogue.titles())
    print(f"{len(catalogue)} titles, trie of {len(trie)} nodes built in {time.perf_counter() - t0:.1f} s; "
          f"{len(tasks)} records, torch threads {torch.get_num_threads()}")
    beams = [int(b) for b in args.beams.split(",") if b]
    rows = []
    for i, task in enumerate(tasks):
        agent.reset(task.view)
        turn = agent.act_batch([task.observation])[0]
        raw = turn.raw or ""
        if TITLE_OPEN not in raw:
            print(f"{task.task_id}: no title in the forced turn, skipped")
            continue
        out = raw[len(agent.prefill):]  # the completion after the prompt's prefill
        prompt = agent.prompt(task.observation) + out[: out.index(TITLE_OPEN) + len(TITLE_OPEN)]
        ids = backend.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        results = {}
        methods = [(f"beam {b}", lambda b=b: beam_rank_titles(backend.model, ids, trie, k=args.k, beam=b)) for b in beams]
        if i < args.exact_records:
            methods.append(("exact", lambda: rank_titles(backend.model, ids, trie, k=args.k)))
        for name, run in methods:
            t0 = time.perf_counter()
            res = run()
            results[name] = (res, time.perf_counter() - t0)
        exact = results.get("exact", (None,))[0]
        for name, (res, secs) in results.items():
            row = {"record": task.task_id, "method": name, "prompt_tokens": len(ids), "seconds": round(secs, 2),
                   "expanded": res.expanded, "forward_passes": res.forward_passes, "certified_exact": res.exact,
                   "target_rank": res.titles.index(task.target) + 1 if task.target in res.titles else None}
            if exact is not None:
                row["overlap@10"] = len(set(res.titles[:10]) & set(exact.titles[:10])) / 10
                row[f"overlap@{args.k}"] = len(set(res.titles) & set(exact.titles)) / args.k
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
