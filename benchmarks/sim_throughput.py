"""Simulation throughput: naive vs batched vs batched + KV reuse, the same episodes in one run.

    python benchmarks/sim_throughput.py [--episodes 32] [--max-turns 6] [--user zero-shot --recommender zero-shot]

The same N episodes (same seeds, greedy decoding, same dtype) run through the real runtime (Ray,
one model server shared by both roles, one agent host for both roles) in these modes:
(a) naive: the model server generates one request at a time (``max_batch 1``), no KV reuse
(``--reference-episodes K``: only the first K episodes, the agreement reference for long runs);
(b) batched: batches of up to ``--max-batch`` requests from concurrent episodes, every prompt prefilled whole;
(c) batched + KV reuse: as (b), each episode's KV cache kept between turns (prefill of new tokens only);
(d) constrained: as (c), every turn decoded under the turn grammar (legal turns, catalogue titles);
(s) as (c), the kept KV caches in files (the page cache) instead of the model server's memory;
(r) as (d), with the simulation's repetition controls except the ban against the speaker's own turns
(penalty, no n-gram twice in a turn, none from the partner's last turn), still greedy;
(o) as (r), with the own-turn ban too (``own_no_repeat_ngram``): run ``--modes dro`` for what the
controls cost in tokens/s (their texts differ from (d) by design, so compare rates, not agreement).
(a)-(c) and (s) decode free text (parsed afterwards), so their agreement with (a) is exact; (d) writes other
turns by design: compare its tokens/s and turns/s with (c), and the mask time the server reports.
The default agents are the zero-shot ones on the default model (SmolLM2-135M): with their fallback
parser every turn lands, so episodes run their full length (the untrained ``llm`` agents mostly end
in protocol errors after a turn or two). For each mode it prints turns/s, generated tokens/s
(tokens of the raw model outputs, counted with the model's tokenizer), peak RSS (the largest sum,
sampled every 0.2 s, of the resident memory of the driver and every Ray worker process; Ray's own
daemons are reported apart), the ratio to (a), the fraction of (a)'s turns whose parsed action and
text the mode reproduces exactly, and where the model server's time went (prefill, decode steps,
rows per step). Then the batch-saturated decode limit: tokens/s of pure decoding of one batch of
``--max-batch`` sequences over the runtime's own cache layers, at 512 cached tokens and at each
mode's mean decode context, and each mode's share of both. Last, the decision evaluation: the
judged items of the first ``--decision-records`` records decided by generation and by scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

MODES = {
    "a": dict(label="(a) naive, batch 1", max_batch=1, prefix_cache_mb=0.0),
    "b": dict(label="(b) batched", prefix_cache_mb=0.0),
    "c": dict(label="(c) batched + KV reuse"),
    "d": dict(label="(d) (c) + constrained", decoding="constrained"),
    "s": dict(label="(s) (c), KV kept in files", prefix_cache_spill=True),
    "r": dict(label="(r) (d) + controls, no own", decoding="constrained", controls="no-own"),
    "o": dict(label="(o) (d) + all controls", decoding="constrained", controls="all"),
}


def mode_generation(spec: dict, max_new_tokens: int):
    """A mode's decoding: greedy; with the simulation's repetition controls where the mode asks
    (``controls``: "all", or "no-own" without the ban against the speaker's own turns)."""
    from interplay.backends.base import GenerationParams
    from interplay.runtime.role_decoding import with_simulation_controls

    params = GenerationParams(max_new_tokens=max_new_tokens, decoding=spec.get("decoding", "free"))
    if spec.get("controls"):
        params = with_simulation_controls(params)
        if spec["controls"] == "no-own":
            params = params.model_copy(update={"own_no_repeat_ngram": 0})
    return params


def turn_agreement(reference: list, other: list) -> tuple[int, int]:
    """(turns of ``reference`` whose action and text ``other`` reproduces at the same index, all turns)."""
    by_id = {e.episode_id: e for e in other}
    same = total = 0
    for ep in reference:
        theirs = by_id.get(ep.episode_id)
        for i, turn in enumerate(ep.turns):
            total += 1
            if theirs is not None and i < len(theirs.turns):
                t = theirs.turns[i]
                same += int(t.action == turn.action and t.text == turn.text)
    return same, total


def generated_tokens(episodes: list, tokenizer) -> int:
    """Tokens the models generated (raw outputs, failed attempts included)."""
    n = 0
    for ep in episodes:
        for t in ep.turns:
            for raw in [t.raw] + [f.raw for f in t.failed_attempts]:
                if raw:
                    n += len(tokenizer(raw, add_special_tokens=False)["input_ids"])
    return n


class RssSampler:
    """Peak of the summed RSS of this process and its Ray worker processes, sampled in a thread;
    Ray's daemons (raylet, GCS, dashboard agents) are summed apart."""

    def __init__(self, every_s: float = 0.2):
        import threading

        self.every_s, self.peak_mb, self.peak_daemons_mb = every_s, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        workers = me.memory_info().rss
        daemons = 0
        for p in me.children(recursive=True):
            try:
                rss, name = p.memory_info().rss, " ".join(p.cmdline()[:3])
            except psutil.Error:
                continue
            daemon = any(d in name for d in ("DashboardAgent", "RuntimeEnvAgent", "dashboard", "raylet", "gcs_server",
                                             "monitor.py", "log_monitor"))
            if not daemon and ("default_worker.py" in name or "ray::" in name):
                workers += rss
            else:
                daemons += rss
        self.peak_mb = max(self.peak_mb, workers / 2**20)
        self.peak_daemons_mb = max(self.peak_daemons_mb, daemons / 2**20)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def decode_limit(model_path: str, dtype: str, batch: int, context: int, steps: int, threads: int) -> float:
    """Generated tokens/s of pure batched decoding (``batch`` sequences, ``context`` cached tokens),
    over the same preallocated cache layers the runtime's decode loop writes into."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    from interplay.backends.kv_reuse import _preallocated_layer
    from interplay.backends.transformers_backend import pick_dtype

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=pick_dtype(dtype)).eval()
    with torch.inference_mode():
        ids = torch.randint(100, 1000, (batch, context))
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        cache = DynamicCache()
        cache.layers = []
        for k, v in kv:
            layer = _preallocated_layer((batch, k.shape[1], context + steps + 1, k.shape[3]), k.dtype, k.device, context)
            layer.kbuf[:, :, :context], layer.vbuf[:, :, :context] = k, v
            cache.layers.append(layer)
        del out, kv
        nxt = torch.randint(100, 1000, (batch, 1))
        t0 = None
        for step in range(steps + 1):  # the first step warms up
            if step == 1:
                t0 = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True,
                        position_ids=torch.full((batch, 1), context + step))
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        return batch * steps / (time.perf_counter() - t0)


def decision_evaluation(args) -> dict | None:
    """The human-agreement evaluation's cost: each judged item of the first ``--decision-records``
    records decided by generating the user's turn and by scoring the allowed actions
    (``benchmarks/decision_scoring.py``), on one in-process model; records/s of each and how
    often the two decisions agree."""
    if not args.decision_records:
        return None
    if not (Path(args.decision_data) / "test.jsonl").exists():
        print(f"decision evaluation skipped: no {args.decision_data}/test.jsonl "
              f"(build it with 'interplay data build', see the README)")
        return None
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from decision_scoring import generation_vs_scoring

    from interplay.agent_specs import check_agent_spec, model_of
    from interplay.data.build import read_catalogue, read_records
    from interplay.evaluation.tasks import human_decision_tasks
    from interplay.protocol import Role

    spec = check_agent_spec(args.decision_agent, Role.USER)
    records = read_records(args.decision_data, "test")[: args.decision_records]
    catalogue = read_catalogue(args.decision_data)
    items = human_decision_tasks(records, catalogue)[0]
    g = generation_vs_scoring(spec, model_of(spec), catalogue, items)
    g.update(records=len(records), agent=args.decision_agent,
             generate_records_per_s=len(records) / g["generate_s"], score_records_per_s=len(records) / g["score_s"])
    print(f"\ndecision evaluation, {args.decision_agent}, first {len(records)} records of {args.decision_data} test "
          f"({g['items']} judged items)")
    print(f"{'method':<26}{'wall s':>8}{'records/s':>11}{'items/s':>9}")
    for name, key in (("by generation", "generate_s"), ("by scoring", "score_s")):
        print(f"{name:<26}{g[key]:>8.1f}{len(records) / g[key]:>11.2f}{g['items'] / g[key]:>9.2f}")
    print(f"scoring x{g['generate_s'] / g['score_s']:.1f} faster; decisions agree (generated action = most "
          f"probable scored action) on {g['same']} of {g['items']}")
    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--user", default="zero-shot")
    ap.add_argument("--recommender", default="zero-shot")
    ap.add_argument("--data", default="demo")
    ap.add_argument("--split", default="test")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-turns", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--prefix-cache-mb", type=float, default=1024.0)
    ap.add_argument("--prefix-cache-spill", action="store_true",
                    help="(c), (d): kept KV caches in files (the page cache) instead of the model server's memory")
    ap.add_argument("--modes", default="abcd", help="which of a, b, c, d, s, r, o to run (a is the reference)")
    ap.add_argument("--reference-episodes", type=int, default=None,
                    help="run (a) on the first N episodes only (default: all); agreement is measured on those, "
                         "as episodes are independent and numbered the same in every mode")
    ap.add_argument("--decision-agent", default="zero-shot",
                    help="user agent whose accept/reject decisions are judged by generation and by scoring")
    ap.add_argument("--decision-data", default="data/redial", help="a built data set with human decisions")
    ap.add_argument("--decision-records", type=int, default=20, help="its first N test records (0: skip)")
    ap.add_argument("--keep", default=None, help="keep the run folders here")
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    args = ap.parse_args()

    import ray

    from interplay.episode_log import EPISODES_FILE, latest_episodes
    from interplay.runtime.simulation import SimulationConfig, run_simulation

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sim_throughput_"))
    results, logs = {}, {}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for mode in args.modes:
            spec = {"max_batch": args.max_batch, "prefix_cache_mb": args.prefix_cache_mb,
                    "prefix_cache_spill": args.prefix_cache_spill, **MODES[mode]}
            episodes = args.reference_episodes if mode == "a" and args.reference_episodes else args.episodes
            out = root / mode
            shutil.rmtree(out, ignore_errors=True)
            cfg = SimulationConfig(user=args.user, recommender=args.recommender, data=args.data, split=args.split,
                                   episodes=episodes, max_turns=args.max_turns, out=str(out),
                                   concurrency=args.concurrency, max_batch=spec["max_batch"], dtype=args.dtype,
                                   prefix_cache_mb=spec["prefix_cache_mb"], prefix_cache_spill=spec["prefix_cache_spill"],
                                   # greedy, no repetition controls, no turn caps: the decoding the
                                   # earlier throughput figures were measured with
                                   generation=mode_generation(spec, args.max_new_tokens),
                                   turn_cap_percentile=0.0)
            with RssSampler() as rss:
                summary = run_simulation(cfg, progress=True)
            logs[mode] = latest_episodes(out / EPISODES_FILE)
            server = next(iter(summary["model_servers"].values()), {})
            results[mode] = dict(label=spec["label"], wall_s=summary["wall_s"],
                                 turns=sum(e.num_turns for e in logs[mode]),
                                 peak_rss_mb=round(rss.peak_mb, 1), ray_daemons_peak_rss_mb=round(rss.peak_daemons_mb, 1),
                                 peak_rss_by_process=summary["peak_rss_mb"], mean_batch=server.get("mean_batch"),
                                 prefix_cache=server.get("prefix_cache"), constrained=server.get("constrained"),
                                 generation=server.get("generation"),
                                 parsed_turn_rate=summary["parsed_turn_rate"], fallback_rate=summary["fallback_rate"],
                                 protocol_errors=summary["termination"]["protocol_error"])
            print(json.dumps({mode: results[mode]}, default=str))
    finally:
        ray.shutdown()

    from interplay.agent_specs import AgentSpec, model_of
    from interplay.backends.default_model import resolve_model_path

    from transformers import AutoTokenizer  # after the runs: it imports torch into the driver

    model_path = resolve_model_path(model_of(AgentSpec.parse(args.user)) or model_of(AgentSpec.parse(args.recommender)))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    limit = decode_limit(model_path, args.dtype, args.max_batch, context=512, steps=16, threads=2)
    # the same pure decoding at the context length the mode's decode steps attended to on average:
    # longer episodes decode over longer caches, which no scheduling can avoid
    matched: dict[int, float] = {}
    for r in results.values():
        ctx = (r.get("generation") or {}).get("mean_context")
        if ctx:
            r["mean_context"] = ctx
            key = int(round(ctx))
            if key not in matched:
                matched[key] = decode_limit(model_path, args.dtype, args.max_batch, context=key, steps=16, threads=2)
            r["matched_decode_limit"] = matched[key]
    ref = logs.get("a")
    print(f"\n{args.episodes} episodes, {args.concurrency} concurrent, max_batch {args.max_batch}, "
          f"max_turns {args.max_turns}, max_new_tokens {args.max_new_tokens}, dtype {args.dtype}, "
          f"user {args.user}, recommender {args.recommender}, data {args.data}")
    header = (f"{'mode':<26}{'turns':>6}{'wall s':>8}{'turns/s':>9}{'tok/s':>8}{'x (a)':>7}{'RSS MB':>8}{'agree':>8}"
              f"{'of limit':>9}{'of matched':>11}")
    print(header)
    base = None
    for mode, r in results.items():
        r["gen_tokens"] = generated_tokens(logs[mode], tokenizer)
        r["turns_per_s"] = r["turns"] / r["wall_s"]
        r["tokens_per_s"] = r["gen_tokens"] / r["wall_s"]
        base = base or (r["turns_per_s"] if mode == "a" else None)
        r["speedup"] = r["turns_per_s"] / base if base else None
        if ref is not None:
            same, total = turn_agreement(ref, logs[mode])
            r["agreement"] = same / total if total else None
            r["agreement_turns"] = total
        r["share_of_decode_limit"] = r["tokens_per_s"] / limit
        r["share_of_matched_limit"] = r["tokens_per_s"] / r["matched_decode_limit"] if r.get("matched_decode_limit") else None
        print(f"{r['label']:<26}{r['turns']:>6}{r['wall_s']:>8.1f}{r['turns_per_s']:>9.2f}{r['tokens_per_s']:>8.1f}"
              f"{(r['speedup'] or float('nan')):>7.2f}{r['peak_rss_mb']:>8.0f}"
              f"{(r.get('agreement') if r.get('agreement') is not None else float('nan')):>8.3f}"
              f"{r['share_of_decode_limit']:>9.2f}{(r['share_of_matched_limit'] or float('nan')):>11.2f}")
    print(f"batch-saturated decode limit (batch {args.max_batch}, 512 cached tokens): {limit:.1f} tok/s")
    for ctx, value in matched.items():
        print(f"matched decode limit (batch {args.max_batch}, {ctx} cached tokens: a mode's mean decode context): "
              f"{value:.1f} tok/s")
    if ref is not None:
        print(f"agreement: over the {len(ref)} episodes (a) ran, {next(iter(results.values())).get('agreement_turns')} "
              f"turns")
    for mode, r in results.items():
        print(f"{mode}: parsed turn rate {r['parsed_turn_rate']:.3f}, fallback rate {r['fallback_rate']:.3f}, "
              f"protocol errors {r['protocol_errors']}")
        if r.get("generation"):
            print(f"{mode}: model server time {r['generation']}")
        if r.get("prefix_cache"):
            print(f"{mode}: prefix cache {r['prefix_cache']}")
        if r.get("constrained"):
            print(f"{mode}: constrained decoding {r['constrained']}")
    if "c" in results and "d" in results:
        c, d = results["c"], results["d"]
        print(f"(d) vs (c): turns/s x{d['turns_per_s'] / c['turns_per_s']:.3f}, "
              f"tok/s x{d['tokens_per_s'] / c['tokens_per_s']:.3f}")
    decisions = decision_evaluation(args)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), decode_limit_tok_s=limit, matched_decode_limits=matched,
                                                   modes=results,
                                                   decisions=decisions), indent=2, default=str))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
