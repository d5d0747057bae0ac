"""KV reuse across turns: the LRU store, generation equal to model.generate, and unchanged episode logs."""

import json
from pathlib import Path

import pytest
import torch

from interplay.backends.base import GenerationParams, cut_at_stop
from interplay.backends.kv_reuse import PREFILL_GROUP, _fill_holes_order
from interplay.backends.prefix_store import PrefixKVStore
from interplay.backends.transformers_backend import TransformersBackend


def _kv(n_tokens: int, layers: int = 2) -> list:
    return [(torch.zeros(1, 2, n_tokens, 4), torch.zeros(1, 2, n_tokens, 4)) for _ in range(layers)]


def test_store_reuses_longest_common_prefix_and_leaves_one_token_to_prefill():
    store = PrefixKVStore(budget_bytes=10**6)
    store.put("ep/user", [1, 2, 3, 4, 5], _kv(5))
    assert store.lookup("ep/user", [1, 2, 3, 9, 9])[0] == 3  # diverges at the 4th token
    assert store.lookup("ep/user", [1, 2, 3, 4, 5, 6, 7])[0] == 5  # a pure extension
    assert store.lookup("ep/user", [1, 2, 3, 4, 5])[0] == 4  # the same prompt: the last token is recomputed
    assert store.lookup("ep/user", [7, 2, 3])[0] == 0
    assert store.lookup("other", [1, 2, 3])[0] == 0
    assert store.stats["hits"] == 3 and store.stats["lookups"] == 5


def test_store_evicts_least_recently_used_within_budget():
    entry = 2 * 2 * (2 * 10 * 4) * 4  # layers * (k, v) * elements * float32 bytes
    store = PrefixKVStore(budget_bytes=2 * entry)
    store.put("a", list(range(10)), _kv(10))
    store.put("b", list(range(10)), _kv(10))
    store.lookup("a", list(range(11)))  # a is now more recent than b
    store.put("c", list(range(10)), _kv(10))
    assert list(store.entries) == ["a", "c"] and store.used_bytes == 2 * entry
    assert store.stats["evictions"] == 1
    store.put("huge", list(range(100)), _kv(100))  # larger than the whole budget: not kept
    assert "huge" not in store.entries and list(store.entries) == ["a", "c"]
    store.drop("a")
    assert store.used_bytes == entry


class HFGenerate:
    """The reference: transformers' own ``model.generate`` on the left-padded batch, greedy."""

    def __init__(self, backend: TransformersBackend):
        self.b = backend
        self.tokenizer = backend.tokenizer

    def generate(self, prompts: list[str], params: GenerationParams) -> list[str]:
        tok = self.b.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = self.b.model.generate(**enc, max_new_tokens=params.max_new_tokens, do_sample=False,
                                        pad_token_id=tok.pad_token_id, stop_strings=list(params.stop) or None,
                                        tokenizer=tok, temperature=None, top_p=None, top_k=None)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=False)
        return [self.b._clean(t) for t in texts]


@pytest.fixture(scope="module")
def backends(tiny_model_dir):
    reusing = TransformersBackend(str(tiny_model_dir), dtype="float32", prefix_cache_mb=64)
    return HFGenerate(reusing), reusing


def test_batched_decoding_equals_model_generate(backends):
    reference, reusing = backends
    prompts = ["Hello there, how are", "A much longer prompt about movies and the people who watch them", "Hi"]
    params = GenerationParams(max_new_tokens=12, stop=())
    assert reusing.generate(prompts, params) == reference.generate(prompts, params)
    stop = GenerationParams(max_new_tokens=30, stop=(" the",))
    ours = reusing.generate(prompts, stop)
    assert all(o.endswith(" the") or " the" not in o for o in ours)
    assert ours == [cut_at_stop(t, stop.stop) for t in reference.generate(prompts, stop)]


def test_sampling_does_not_depend_on_the_batch(backends):
    _, reusing = backends
    params = GenerationParams(max_new_tokens=8, temperature=1.0, stop=())
    alone = reusing.generate(["Once upon a time"], params, seeds=[11])
    batched = reusing.generate(["A different prompt entirely", "Once upon a time"], params, seeds=[3, 11])
    assert batched[1] == alone[0]
    assert reusing.generate(["Once upon a time"], params, seeds=[12]) != alone


def _chat(tok, turns):
    msgs = [{"role": "system", "content": "You recommend movies."}]
    msgs += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_reuse_generates_what_generate_does_turn_after_turn(backends):
    plain, reusing = backends
    tok = plain.tokenizer
    params = GenerationParams(max_new_tokens=10, stop=())
    dialogues = [["I like space operas."], ["Any comedy from the nineties, something light?"], ["Horror."]]
    keys = ["e0/recommender", "e1/recommender", "e2/recommender"]
    for turn in range(3):
        prompts = [_chat(tok, d) for d in dialogues]
        expected = plain.generate(prompts, params)
        assert reusing.generate(prompts, params, cache_keys=keys) == expected
        dialogues = [d + [out, "Something else, please."] for d, out in zip(dialogues, expected)]
        if turn == 0:
            first = reusing.prefix_cache_stats()
            assert first["hits"] == 0 and first["reused_tokens"] == 0
    stats = reusing.prefix_cache_stats()
    assert stats["hits"] == 6 and stats["entries"] == 3
    # a float32 model's kept KV is stored as float16 (half the bytes), and still reproduced generate
    entries = reusing.prefix_store.entries.values()
    assert all(k.dtype == torch.float16 and v.dtype == torch.float16 for e in entries for k, v in e.kv)
    assert reusing.prefix_store.used_bytes == sum(2 * k.numel() * 2 for e in entries for k, _ in e.kv)
    # in turns 2 and 3 most of each prompt came from the store
    assert stats["reused_tokens"] > stats["prefilled_tokens"] - first["prefilled_tokens"]
    reusing.release(["e0/recommender"])
    assert reusing.prefix_cache_stats()["entries"] == 2


def test_many_rows_of_mixed_history_lengths_match_generate_turn_after_turn(backends):
    """More rows than a prefill group: rows sorted by new tokens into groups whose stored prefixes and
    new tokens differ in length (masked padding inside the batch buffers), rows that finish at
    different steps, and every kept entry (prompt columns + generated columns) reused next turn."""
    plain, reusing = backends
    tok = plain.tokenizer
    params = GenerationParams(max_new_tokens=14, stop=(" the",))
    openers = ["Hi.", "Something with dragons, please, the older the better, and long.", "Westerns?",
               "I loved Heat and Ronin; crime films with great shootouts.", "Cartoons for a six year old.",
               "Any musicals?", "A documentary about the sea, or about whales, or about ships."]
    assert len(openers) > PREFILL_GROUP
    dialogues = [[o] for o in openers]
    keys = [f"mixed{i}/user" for i in range(len(openers))]
    before = reusing.prefix_cache_stats()
    for turn in range(3):
        prompts = ["\n".join(d) + "\n" for d in dialogues]
        expected = [cut_at_stop(t, params.stop) for t in plain.generate(prompts, params)]
        assert reusing.generate(prompts, params, cache_keys=keys) == expected
        if turn == 0:
            assert len({len(tok(o, add_special_tokens=False)["input_ids"]) for o in expected}) > 1
        # replies of different lengths: the next turn's new tokens differ per row
        dialogues = [d + [out, "No." if i % 2 else "Hmm, tell me more about the plot and the cast."]
                     for i, (d, out) in enumerate(zip(dialogues, expected))]
    after = reusing.prefix_cache_stats()
    assert after["hits"] - before["hits"] == 2 * len(openers)


def test_one_key_twice_in_a_batch_reuses_its_entry_once(backends):
    plain, reusing = backends
    tok = plain.tokenizer
    params = GenerationParams(max_new_tokens=5, stop=())
    first = _chat(tok, ["Any road movies?"])
    out = reusing.generate([first], params, cache_keys=["dup/user"])[0]
    prompt = _chat(tok, ["Any road movies?", out, "Newer ones."])
    hits = reusing.prefix_cache_stats()["hits"]
    assert reusing.generate([prompt, prompt], params, cache_keys=["dup/user", "dup/user"]) == \
        plain.generate([prompt, prompt], params)
    assert reusing.prefix_cache_stats()["hits"] == hits + 1


def test_rows_leaving_the_batch_are_replaced_by_the_last_rows():
    order, moves = _fill_holes_order([0, 2, 3, 5], 6)  # rows 1 and 4 finished
    assert moves == [(1, 5)] and order == [0, 5, 2, 3]
    order, moves = _fill_holes_order([4, 5], 6)
    assert moves == [(0, 4), (1, 5)] and order == [4, 5]
    assert _fill_holes_order([0, 1, 2], 5) == ([0, 1, 2], [])
    assert _fill_holes_order([], 3) == ([], [])


def test_a_last_turn_reuses_its_cache_but_does_not_keep_it(backends):
    plain, reusing = backends
    tok = plain.tokenizer
    params = GenerationParams(max_new_tokens=6, stop=())
    out = reusing.generate([_chat(tok, ["Any thrillers?"])], params, cache_keys=["last/user"])[0]
    before = reusing.prefix_cache_stats()
    prompt = _chat(tok, ["Any thrillers?", out, "Older ones."])
    assert reusing.generate([prompt], params, cache_keys=["last/user"], keep_caches=[False]) == plain.generate([prompt], params)
    after = reusing.prefix_cache_stats()
    assert after["hits"] == before["hits"] + 1 and after["stored"] == before["stored"]
    assert "last/user" not in reusing.prefix_store.entries
    # in a batch whose rows finish at different steps, only the rows asked to be kept are stored
    prompts = ["Hello there, how are", "A much longer prompt about movies and the people who watch them", "Hi"]
    stop = GenerationParams(max_new_tokens=30, stop=(" the",))
    outs = reusing.generate(prompts, stop, cache_keys=["k0", "k1", "k2"], keep_caches=[True, False, True])
    assert outs == [cut_at_stop(t, stop.stop) for t in plain.generate(prompts, stop)]
    assert len({len(tok(o, add_special_tokens=False)["input_ids"]) for o in outs}) > 1
    assert {"k0", "k2"} <= set(reusing.prefix_store.entries) and "k1" not in reusing.prefix_store.entries


def test_spilled_entries_live_in_files_and_reuse_exactly(tiny_model_dir, backends):
    plain, _ = backends
    tok = plain.tokenizer
    spilling = TransformersBackend(str(tiny_model_dir), dtype="float32", prefix_cache_mb=64, prefix_cache_spill=True)
    store = spilling.prefix_store
    params = GenerationParams(max_new_tokens=8, stop=())
    dialogues = [["Any thrillers?"], ["Something for kids, maybe animated, from the last ten years?"]]
    keys = ["s0/user", "s1/user"]
    for _ in range(3):
        prompts = [_chat(tok, d) for d in dialogues]
        expected = plain.generate(prompts, params)
        assert spilling.generate(prompts, params, cache_keys=keys) == expected
        dialogues = [d + [out, "Older, please."] for d, out in zip(dialogues, expected)]
    # the kept entries are files holding the exact float16 bytes, none of them in memory
    files = sorted(Path(store.spill_dir).iterdir())
    assert len(files) == 2 and all(e.kv is None for e in store.entries.values())
    assert sum(f.stat().st_size for f in files) == store.used_bytes
    assert spilling.prefix_cache_stats()["hits"] == 4
    entry = store.entries["s0/user"]
    n, kv = store.lookup("s0/user", entry.ids + [1])
    assert n == len(entry.ids) and kv[0][0].dtype == torch.float16 and kv[0][0].shape[-2] == n
    spilling.release(["s0/user"])
    assert len(list(Path(store.spill_dir).iterdir())) == 1
    folder = store.spill_dir
    del spilling, store
    import gc

    gc.collect()
    assert not Path(folder).exists()


def test_exact_storage_keeps_the_model_dtype(tiny_model_dir):
    exact = TransformersBackend(str(tiny_model_dir), dtype="float32", prefix_cache_mb=8, prefix_cache_dtype="model")
    exact.generate(["Hello there"], GenerationParams(max_new_tokens=3, stop=()), cache_keys=["e/user"])
    assert exact.prefix_store.dtype is None
    assert all(k.dtype == torch.float32 for k, _ in exact.prefix_store.entries["e/user"].kv)


def test_a_stale_entry_only_costs_its_reuse(backends):
    """A prompt diverging mid-way from its key's entry reuses the entry up to the first differing
    token (worked out here from the token ids), prefills the rest, and generates what generate does."""
    plain, reusing = backends
    tok = plain.tokenizer
    params = GenerationParams(max_new_tokens=8, stop=())
    reusing.generate([_chat(tok, ["Tell me about westerns."])], params, cache_keys=["stale"])
    kept = reusing.prefix_store.entries["stale"].ids
    # a retry whose history was re-rendered differently: the prompt diverges mid-way
    prompt = _chat(tok, ["Tell me about musicals instead."])
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    shared = next(n for n, (a, b) in enumerate(zip(kept + [None], ids)) if a != b)
    assert 0 < shared < len(ids) - 1 and shared < len(kept)  # a real shared head, a real divergence
    before = reusing.prefix_cache_stats()
    assert reusing.generate([prompt], params, cache_keys=["stale"]) == plain.generate([prompt], params)
    after = reusing.prefix_cache_stats()
    assert (after["lookups"] - before["lookups"], after["hits"] - before["hits"]) == (1, 1)
    assert after["reused_tokens"] - before["reused_tokens"] == shared
    assert after["prefilled_tokens"] - before["prefilled_tokens"] == len(ids) - shared


def test_kv_reuse_leaves_episode_logs_unchanged(tmp_path, tiny_model_dir):
    from interplay.episode_log import read_episodes
    from test_simulation import simulate

    spec = f"zero-shot:{tiny_model_dir}"
    logs = {}
    for name, extra in {"naive": ["--max-batch", 1, "--prefix-cache-mb", 0],
                        "batched": ["--prefix-cache-mb", 0], "reuse": ["--prefix-cache-mb", 64],
                        "spill": ["--prefix-cache-mb", 64, "--prefix-cache-spill"]}.items():
        out = tmp_path / name
        simulate("--user", spec, "--recommender", spec, "--episodes", 4, "--max-turns", 5, "--max-new-tokens", 10,
                 "--concurrency", 4, "--dtype", "float32", "--out", out, *extra)
        logs[name] = [ep.model_dump(exclude={"wall_s": True, "turns": {"__all__": {"latency_s"}}})
                      for ep in sorted(read_episodes(out / "episodes.jsonl"), key=lambda e: e.episode_id)]
        summary = json.loads((out / "summary.json").read_text())
        server = summary["model_servers"][str(tiny_model_dir)]
        # the server says where its generation time went
        assert server["generation"]["row_steps"] >= server["generation"]["steps"] > 0
        assert server["generation"]["prefill_s"] > 0 and server["generation"]["mean_context"] > 0
        if name == "spill":  # the kept caches went through files: same turns as the others (below)
            assert server["prefix_cache"]["hits"] > 0 and server["prefix_cache"]["spill_s"] > 0
        if name == "reuse":
            cache = server["prefix_cache"]
            assert cache["hits"] > 0 and cache["reused_tokens"] > cache["prefilled_tokens"] / 2
            assert cache["entries"] == 0  # every finished episode released its caches
            # 5 turns: the user speaks at 0, 2, 4 and the recommender at 1, 3. Every request of a
            # turn (retries too) stores its cache, except on a role's last turn (never reused)
            turns = [t for ep in read_episodes(out / "episodes.jsonl") for t in ep.turns]
            assert cache["lookups"] == sum(1 + len(t.failed_attempts) for t in turns)
            assert cache["stored"] == sum(1 + len(t.failed_attempts) for t in turns if t.index + 2 < 5)
    assert sum(len(ep["turns"]) for ep in logs["naive"]) == 20  # every episode ran its 5 turns
    for name in ("batched", "reuse", "spill"):
        for a, b in zip(logs["naive"], logs[name]):
            for k in a:
                if k == "turns":
                    for x, y in zip(a[k], b[k]):
                        assert x == y, (name, x, y)
                assert a[k] == b[k], (name, k)
