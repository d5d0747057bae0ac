"""Log-likelihood of short continuations after a shared prompt, in one prompt pass.

Used to read a decision without generating it: the probability of each legal action after a
user's observation (``<accept>`` vs ``<feedback>`` ...). The prompt is tokenized alone and run
once with a KV cache, as generation runs it; each continuation is tokenized on its own, as the
tokens generation would append (so no BPE merge crosses the boundary: after ``...<action>`` the
continuation ``<accept>`` is scored as ``<``, ``accept``, ``>``, which is what a constrained
decoder can emit there). The cache is repeated once per continuation and the continuations are
scored in one padded batch.

Prompts scored one after another mostly share long prefixes: the judged items of one dialogue, the
four probes of one record, the user turns of one dialogue (each prompt is the previous one plus a
turn). :class:`ScoringPrefixCache` keeps the KV of the last prompts scored, within a byte budget,
and a new prompt is run only from the end of the longest token prefix it shares with one of them.
"""

from __future__ import annotations

from interplay.backends.prefix_store import KV, PrefixKVStore


class ScoringPrefixCache:
    """The KV of recently scored prompts (least recently used evicted past ``budget_bytes``); a
    lookup finds the entry sharing the longest token prefix with a new prompt."""

    def __init__(self, budget_bytes: int, min_shared: int = 16):
        self.store = PrefixKVStore(budget_bytes)
        self.min_shared = min_shared
        self._next = 0

    @property
    def stats(self) -> dict:
        return self.store.stats

    def lookup(self, ids: list[int]) -> tuple[int, KV | None, object]:
        """``(n, kv, key)``: the reusable prefix length (leaving at least one token to run), its KV
        and the entry's key; ``(0, None, None)`` below ``min_shared`` tokens."""
        st = self.store.stats
        st["lookups"] += 1
        best, best_key = 0, None
        for key, entry in self.store.entries.items():
            limit, n = min(len(entry.ids), len(ids) - 1), 0
            while n < limit and entry.ids[n] == ids[n]:
                n += 1
            if n > best:
                best, best_key = n, key
        if best < self.min_shared:
            st["prefilled_tokens"] += len(ids)
            return 0, None, None
        self.store.entries.move_to_end(best_key)
        st["hits"] += 1
        st["reused_tokens"] += best
        st["prefilled_tokens"] += len(ids) - best
        return best, self.store.entries[best_key].kv, best_key

    def put(self, ids: list[int], kv: KV, replaces=None) -> None:
        """Keep ``ids``' KV; ``replaces``: the key of the entry it was run on, dropped when its ids
        are a prefix of ``ids`` (the new entry holds all of it)."""
        old = self.store.entries.get(replaces) if replaces is not None else None
        if old is not None and old.ids == ids[: len(old.ids)]:
            self.store.drop(replaces)
        self._next += 1
        self.store.put(self._next, list(ids), kv)


def score_continuations(model, tokenizer, prompt: str, continuations: list[str],
                        cache: ScoringPrefixCache | None = None) -> list[float]:
    """Sum of the log-probabilities of each continuation's tokens after ``prompt`` (``cache``:
    reuse and keep prompt KVs; the scores equal those without it up to float rounding)."""
    import torch

    if not continuations:
        return []
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tails = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    if not prompt_ids or not all(tails):
        raise ValueError("score_continuations needs a non-empty prompt and non-empty continuations")
    shared = len(prompt_ids)
    device = next(model.parameters()).device
    with torch.inference_mode():
        n, past, key = cache.lookup(prompt_ids) if cache is not None else (0, None, None)
        kwargs = {}
        if past is not None:
            from transformers import DynamicCache

            kwargs["past_key_values"] = DynamicCache(ddp_cache_data=[(k[:, :, :n], v[:, :, :n]) for k, v in past])
        out = model(input_ids=torch.tensor([prompt_ids[n:]], device=device), use_cache=True, logits_to_keep=1,
                    **kwargs)
        if cache is not None:
            # the layers' tensors are new ones (concatenated); later steps replace, never modify, them
            cache.put(prompt_ids, [(layer.keys, layer.values) for layer in out.past_key_values.layers], key)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each tail's first token
        width = max(len(t) for t in tails)
        scores = [float(first[t[0]]) for t in tails]
        if width > 1:
            kv_cache = out.past_key_values
            kv_cache.batch_repeat_interleave(len(tails))
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            ids = torch.tensor([t + [pad] * (width - len(t)) for t in tails], device=device)
            mask = torch.tensor([[1] * (shared + len(t)) + [0] * (width - len(t)) for t in tails], device=device)
            pos = torch.arange(shared, shared + width, device=device).expand(len(tails), -1)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, position_ids=pos,
                                           past_key_values=kv_cache, use_cache=True).logits.float(), dim=-1)
            for i, t in enumerate(tails):
                scores[i] += float(sum(logp[i, j, t[j + 1]] for j in range(len(t) - 1)))
    return scores
