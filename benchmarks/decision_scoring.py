"""Judging a user agent without generating, with and without the scoring prefix cache, side by side.

The human-agreement view, the fidelity probes and the likelihood of real user turns score short
continuations after long prompts (``score_continuations``). Prompts of one dialogue share long
prefixes; :class:`~interplay.backends.continuation_scoring.ScoringPrefixCache` keeps recent
prompts' KV so each is run only from where it differs. This runs the same tasks in the same order
(one part at a time, as ``interplay evaluate user`` does) on one in-process model, cache off then
on, and prints wall time, items per second, the share of prompt tokens reused, and agreement
(largest score difference, decisions that differ at the threshold). Then it generates the decision
turn (greedy, constrained, as a replay would) for the first ``--generate`` judged items and
compares the action written with the most probable scored action, and the time each took.

    python benchmarks/decision_scoring.py --agent zero-shot --data data/redial --split test --records 30
"""

from __future__ import annotations

import argparse
import time

from interplay.agent_specs import AgentContext, AgentSpec, build_agent
from interplay.backends.base import GenerationParams
from interplay.backends.transformers_backend import TransformersBackend
from interplay.data.build import read_catalogue, read_records
from interplay.decision_calibration import thresholded_action
from interplay.evaluation.tasks import human_decision_tasks, user_turn_tasks
from interplay.protocol import Action, Role, Turn


def run(spec: AgentSpec, model: str | None, catalogue, human, turns, cache_mb: float, threshold: float) -> dict:
    backend = TransformersBackend(model, dtype="float32", score_cache_mb=cache_mb)

    def agent_for(task, i):
        agent = build_agent(spec, AgentContext(role=Role.USER, arg=spec.arg, catalogue=catalogue, seed=i,
                                               params=GenerationParams(), backend=backend,
                                               tokenizer=backend.tokenizer))
        agent.reset(task.view)
        return agent

    out = {"p_accept": [], "decisions": [], "logprob": [], "seconds": {}}
    t0 = time.perf_counter()
    for i, task in enumerate(human):
        probs = agent_for(task, i).action_probabilities(task.observation)
        out["p_accept"].append(probs.get("accept", 0.0))
        out["decisions"].append(thresholded_action(probs, threshold))
    out["seconds"]["decisions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, task in enumerate(turns):
        got = agent_for(task, i).turn_likelihood(task.observation,
                                                 Turn(Action(task.reference_action), task.reference or ""))
        out["logprob"].append(got[0])
    out["seconds"]["likelihood"] = time.perf_counter() - t0
    out["cache"] = backend.score_cache_stats()
    return out


def generation_vs_scoring(spec: AgentSpec, model: str | None, catalogue, items: list) -> dict:
    """Each judged item decided twice on one in-process model (no prefix caches): by scoring the
    allowed actions (one forward pass) and by generating the turn as a replay would; seconds of
    each, and how often the generated action is the most probable scored action."""
    backend = TransformersBackend(model, dtype="float32", score_cache_mb=0)
    same, t_gen, t_score = 0, 0.0, 0.0
    for i, task in enumerate(items):
        agent = build_agent(spec, AgentContext(role=Role.USER, arg=spec.arg, catalogue=catalogue, seed=i,
                                               params=GenerationParams(), backend=backend,
                                               tokenizer=backend.tokenizer))
        agent.reset(task.view)
        t0 = time.perf_counter()
        probs = agent.action_probabilities(task.observation)
        t1 = time.perf_counter()
        turn = agent.act(task.observation)
        t_gen += time.perf_counter() - t1
        t_score += t1 - t0
        same += turn.action.value == max(probs, key=probs.get)
    return {"items": len(items), "generate_s": t_gen, "score_s": t_score, "same": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", default="zero-shot", help="a user agent spec that can score (zero-shot, usersim:CKPT)")
    ap.add_argument("--data", default="data/redial")
    ap.add_argument("--split", default="test")
    ap.add_argument("--records", type=int, default=30, help="the first N records of the split")
    ap.add_argument("--threshold", type=float, default=0.5, help="P(accept) threshold of the decisions")
    ap.add_argument("--cache-mb", type=float, default=1024)
    ap.add_argument("--generate", type=int, default=10, help="judged items also decided by generation (0: none)")
    args = ap.parse_args()

    from interplay.agent_specs import check_agent_spec, model_of

    spec = check_agent_spec(args.agent, Role.USER)
    model = model_of(spec)
    records = read_records(args.data, args.split)[: args.records]
    catalogue = read_catalogue(args.data)
    human = human_decision_tasks(records, catalogue)[0]
    turns = user_turn_tasks(records, catalogue)[0]
    print(f"{args.agent} on {args.data} {args.split}, {len(records)} records: {len(human)} judged items, "
          f"{len(turns)} user turns")
    results = {name: run(spec, model, catalogue, human, turns, mb, args.threshold)
               for name, mb in (("no cache", 0), ("prefix cache", args.cache_mb))}
    base = results["no cache"]
    print("| mode | decisions s | items/s | likelihood s | turns/s | prompt tokens reused | max abs diff "
          "log P | decisions differing |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        s, c = r["seconds"], r["cache"]
        reused = c.get("reused_tokens", 0) / max(1, c.get("reused_tokens", 0) + c.get("prefilled_tokens", 0))
        diff = max([abs(a - b) for a, b in zip(r["logprob"], base["logprob"])] +
                   [abs(a - b) for a, b in zip(r["p_accept"], base["p_accept"])], default=0.0)
        differ = sum(a != b for a, b in zip(r["decisions"], base["decisions"]))
        print(f"| {name} | {s['decisions']:.1f} | {len(human) / s['decisions']:.2f} | {s['likelihood']:.1f} | "
              f"{len(turns) / s['likelihood']:.2f} | {reused:.2f} | {diff:.2e} | {differ} of {len(human)} |")
    speed = sum(base["seconds"].values()) / sum(results["prefix cache"]["seconds"].values())
    print(f"ratio, all scoring, no cache / prefix cache: {speed:.2f}x")
    if args.generate:
        g = generation_vs_scoring(spec, model, catalogue, human[: args.generate])
        print(f"decisions by generation vs by scoring, {g['items']} judged items (no cache either way): "
              f"{g['generate_s'] / g['items']:.2f} s vs {g['score_s'] / g['items']:.2f} s per item "
              f"({g['generate_s'] / g['score_s']:.1f}x); generated action = most probable scored action: "
              f"{g['same']} of {g['items']}")

if __name__ == "__main__":
    main()
