"""Per-episode KV reuse: keep each conversation's cache so a turn's prefill covers only new tokens.

An agent's prompt at turn t+1 is its prompt at turn t, its own reply, and the other side's reply.
:class:`PrefixKVStore` keeps, per cache key (one per episode and role), the token ids the model has
already processed and their per-layer keys/values, evicting the least recently used entries beyond
a byte budget. :func:`generate_reusing_prefix` prefills each prompt from the longest common token
prefix with its stored entry (only the new tokens, a few prompts per forward pass), then decodes all
prompts of the batch together (left-padded caches, explicit positions) and stores every sequence's
cache back for its next turn. A stored entry that does not match (a re-rendered history, a retry)
only costs the reuse: the common prefix is recomputed from the first differing token.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from interplay.backends.base import GenerationParams

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape [1, kv_heads, len, head_dim]


@dataclass
class _Entry:
    ids: list[int]
    kv: KV
    nbytes: int


@dataclass
class PrefixKVStore:
    """LRU store of processed token ids and their KV tensors, one entry per key, within ``budget_bytes``."""

    budget_bytes: int
    #: storage dtype of kept entries (None: as computed); the decode buffers stay in the model's dtype
    dtype: torch.dtype | None = None
    entries: OrderedDict = field(default_factory=OrderedDict)
    used_bytes: int = 0
    stats: dict = field(default_factory=lambda: {"lookups": 0, "hits": 0, "reused_tokens": 0,
                                                 "prefilled_tokens": 0, "stored": 0, "evictions": 0,
                                                 "peak_mb": 0.0})

    def lookup(self, key: str | None, ids: list[int]) -> tuple[int, KV | None]:
        """Length of the reusable prefix of ``ids`` under ``key`` (always leaving one token to
        prefill) and the stored KV; marks the entry recently used."""
        self.stats["lookups"] += 1
        entry = self.entries.get(key) if key is not None else None
        if entry is None:
            return 0, None
        self.entries.move_to_end(key)
        n = 0
        limit = min(len(entry.ids), len(ids) - 1)
        while n < limit and entry.ids[n] == ids[n]:
            n += 1
        if n == 0:
            return 0, None
        self.stats["hits"] += 1
        return n, entry.kv

    def put(self, key: str, ids: list[int], kv: KV) -> None:
        """Store (replace) ``key``'s entry, then evict least recently used entries over budget."""
        self.drop(key)
        self.stats["stored"] += 1
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if nbytes > self.budget_bytes:
            return
        self.entries[key] = _Entry(ids, kv, nbytes)
        self.used_bytes += nbytes
        self.stats["peak_mb"] = max(self.stats["peak_mb"], round(self.used_bytes / 2**20, 1))
        while self.used_bytes > self.budget_bytes:
            _, old = self.entries.popitem(last=False)
            self.used_bytes -= old.nbytes
            self.stats["evictions"] += 1

    def drop(self, key: str) -> None:
        """Forget ``key`` (its episode ended)."""
        old = self.entries.pop(key, None)
        if old is not None:
            self.used_bytes -= old.nbytes


def _preallocated_layer(shape: tuple[int, int, int, int], dtype: torch.dtype, device, length: int):
    """A decode-time cache layer over zeroed buffers of ``shape`` ``[batch, kv_heads, capacity,
    head_dim]``, the first ``length`` positions in use: it writes each step's keys/values in place
    instead of concatenating (which copies the whole cache at every step)."""
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def _view(self, n: int) -> None:
            self.keys, self.values = self.kbuf[:, :, :n], self.vbuf[:, :, :n]

        def update(self, key_states, value_states, *args, **kwargs):
            n, k = self.keys.shape[-2], key_states.shape[-2]
            self.kbuf[:, :, n:n + k] = key_states
            self.vbuf[:, :, n:n + k] = value_states
            self._view(n + k)
            return self.keys, self.values

        def batch_select_indices(self, indices):
            n = self.keys.shape[-2]
            self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
            self._view(n)

    layer = PreallocatedLayer()
    layer.kbuf = torch.zeros(shape, dtype=dtype, device=device)
    layer.vbuf = torch.zeros(shape, dtype=dtype, device=device)
    layer.dtype, layer.device, layer.is_initialized = dtype, device, True
    layer._view(length)
    return layer


def _entry_block(layers, row: int, start: int, end: int, dtype: torch.dtype | None = None) -> KV:
    """One row's keys/values over ``[start, end)`` copied into a single contiguous block (one
    allocation per stored conversation instead of two per layer: less heap fragmentation), returned
    as per-layer views; stored as ``dtype`` when given, unless a value overflows it."""
    k0 = layers[0].keys
    block = k0.new_empty((len(layers), 2, 1, k0.shape[1], end - start, k0.shape[3]), dtype=dtype or k0.dtype)
    for i, layer in enumerate(layers):
        block[i, 0, 0].copy_(layer.keys[row, :, start:end])
        block[i, 1, 0].copy_(layer.values[row, :, start:end])
    if block.dtype != k0.dtype and not torch.isfinite(block).all():
        return _entry_block(layers, row, start, end)
    return [(block[i, 0], block[i, 1]) for i in range(len(layers))]


def _next_tokens(logits: torch.Tensor, params: GenerationParams, generators: list | None) -> torch.Tensor:
    """Greedy argmax, or temperature + top-p sampling, of the last-position logits ``[B, V]``; each
    row samples from its own generator, so a request's sample does not depend on its batch."""
    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])


#: prompts prefilled together in one forward pass, grouped by length (measured on 2 CPU cores, 16
#: prompts of 100-160 new tokens over 200 stored ones: 805-844 tok/s in fours, 729 one at a time;
#: unsorted, the padding ate the gain; first turns of ~190 tokens: 961-984 vs 887-894 tok/s)
PREFILL_GROUP = 4


def _prefill_group(model, seqs: list[list[int]], starts: list[int], pasts: list[KV | None],
                   pad_id: int) -> tuple[torch.Tensor, KV, int]:
    """Run ``seqs[r][starts[r]:]`` through the model for every row ``r`` at once, on top of its
    ``pasts[r]`` (the KV of ``seqs[r][:starts[r]]``).

    Layout, with ``P = max(starts)``: each row's past is right-aligned in columns ``[0, P)`` (zeros
    before it, masked) and its new tokens fill ``[P, P + n_r)``, padded on the right. Real tokens
    never attend to padding (it is masked in the past and causally later in the new part), and no
    query is fully masked. Returns each row's last-token logits ``[rows, vocab]``, the per-layer
    keys/values ``[rows, kv_heads, P + max n, head_dim]`` and ``P``."""
    from transformers import DynamicCache

    device = model.device
    rows = len(seqs)
    news = [len(s) - st for s, st in zip(seqs, starts)]
    width_past, width_new = max(starts), max(news)
    cache = DynamicCache()
    if width_past:
        ref = next(p for p in pasts if p)
        layers = []
        for li, (k0, _) in enumerate(ref):
            k = k0.new_zeros((rows, k0.shape[1], width_past, k0.shape[3]))
            v = torch.zeros_like(k)
            for r, (st, past) in enumerate(zip(starts, pasts)):
                if st:
                    k[r, :, width_past - st:] = past[li][0][0, :, :st]
                    v[r, :, width_past - st:] = past[li][1][0, :, :st]
            layers.append((k, v))
        cache = DynamicCache(ddp_cache_data=layers)
    ids = torch.full((rows, width_new), pad_id, dtype=torch.long, device=device)
    positions = torch.zeros((rows, width_new), dtype=torch.long, device=device)
    mask = torch.zeros((rows, width_past + width_new), dtype=torch.long, device=device)
    for r, (seq, st, n) in enumerate(zip(seqs, starts, news)):
        ids[r, :n] = torch.tensor(seq[st:], device=device)
        positions[r] = torch.arange(st, st + width_new, device=device)
        mask[r, width_past - st:width_past + n] = 1
    last = sorted({n - 1 for n in news})
    # logits of each row's last token only: a full [len, vocab] logits tensor per prompt (118 MB
    # for 600 tokens of a 49k vocabulary in float32) was most of the server's memory when kept alive
    out = model(input_ids=ids, past_key_values=cache, position_ids=positions, attention_mask=mask,
                use_cache=True, logits_to_keep=torch.tensor(last, device=device))
    logits = torch.stack([out.logits[r, last.index(n - 1)] for r, n in enumerate(news)])
    kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    return logits, kv, width_past


def generate_reusing_prefix(model, tokenizer, prompts: list[str], params: GenerationParams,
                            keys: list[str | None], store: PrefixKVStore | None,
                            seeds: list[int] | None = None, keep: list[bool] | None = None,
                            constraints: list | None = None, constrainer=None) -> list[list[int]]:
    """Generated token ids for each prompt (up to and including EOS or the token that completes a
    stop string), reusing and then updating ``store``'s entry under each prompt's key (no reuse
    when ``store`` is None). Sampled decoding draws each prompt's tokens from a generator seeded
    with its own seed (``seeds``, default ``params.seed``). ``keep[i]`` false: prompt ``i`` reuses
    its stored entry but is not stored back.

    ``constraints[i]`` (a :class:`~interplay.backends.constrained.TurnConstraint`, or None for
    free text) makes ``constrainer`` mask row ``i``'s logits before argmax / sampling, so it can
    only produce a legal turn; its row ends when the turn is complete. A constrained row that
    reaches ``max_new_tokens`` is closed (only turn-ending tokens) within the constrainer's
    close budget. Unconstrained rows of the same batch are untouched."""
    from transformers import DynamicCache

    device = model.device
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    b = len(prompts)
    lengths = [len(ids) for ids in prompt_ids]
    width = max(lengths)
    matchers = [None] * b
    if constraints is not None and any(c is not None for c in constraints):
        matchers = [constrainer.matcher(c) if c is not None else None for c in constraints]
    constrained = any(m is not None for m in matchers)
    budget = params.max_new_tokens + (constrainer.close_budget(constraints) if constrained else 0)
    cache = DynamicCache()
    cache.layers = []

    def allocate(k0: torch.Tensor, n_layers: int) -> None:  # buffers for the whole batch and generation
        cache.layers = [_preallocated_layer((b, k0.shape[1], width + budget, k0.shape[3]),
                                            model.dtype, device, width) for _ in range(n_layers)]

    starts = [0] * b
    for i, (ids, key) in enumerate(zip(prompt_ids, keys)):
        if store is None:
            continue
        starts[i], past = store.lookup(key, ids)
        store.stats["reused_tokens"] += starts[i]
        store.stats["prefilled_tokens"] += len(ids) - starts[i]
        if key is not None:
            store.drop(key)  # its prefix is in this batch now; the entry is replaced when done
        if past:  # straight into the batch's buffers, freeing the entry: never held twice
            if not cache.layers:
                allocate(past[0][0], len(past))
            a, st = width - lengths[i], starts[i]
            for layer, (k, v) in zip(cache.layers, past):
                layer.kbuf[i, :, a:a + st] = k[0, :, :st]
                layer.vbuf[i, :, a:a + st] = v[0, :, :st]
        del past
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    first_logits: list = [None] * b
    by_new = sorted(range(b), key=lambda i: lengths[i] - starts[i])  # groups of similar length: little padding
    for g in range(0, b, PREFILL_GROUP):
        group = by_new[g:g + PREFILL_GROUP]
        pasts = [[(layer.kbuf[i:i + 1, :, width - lengths[i]:], layer.vbuf[i:i + 1, :, width - lengths[i]:])
                  for layer in cache.layers] if starts[i] else None for i in group]
        logits, kv, width_past = _prefill_group(model, [prompt_ids[i] for i in group], [starts[i] for i in group],
                                                pasts, pad_id)
        del pasts
        for r, i in enumerate(group):
            first_logits[i] = logits[r:r + 1]
        if not cache.layers:
            allocate(kv[0][0], len(kv))
        for layer, (k, v) in zip(cache.layers, kv):
            for r, i in enumerate(group):  # the row's new tokens, right-aligned at width after its past
                n = lengths[i] - starts[i]
                layer.kbuf[i, :, width - n:width] = k[r, :, width_past:width_past + n]
                layer.vbuf[i, :, width - n:width] = v[r, :, width_past:width_past + n]
        del kv
    mask = torch.zeros((b, width + budget), dtype=torch.long, device=device)
    for i, n in enumerate(lengths):
        mask[i, width - n:width] = 1
    positions = torch.tensor(lengths, device=device)

    eos_cfg = getattr(model.generation_config, "eos_token_id", None)  # what model.generate stops on
    if eos_cfg is None:
        eos_cfg = tokenizer.eos_token_id
    eos = set(eos_cfg if isinstance(eos_cfg, list) else [eos_cfg]) - {None}
    stops = [s for s in params.stop if s]
    tail = max((len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops), default=1) + 2

    generated: list[list[int]] = [[] for _ in range(b)]
    active = list(range(b))  # sequence index of each row still in the batch
    gens = None
    if params.temperature > 0:
        gens = [torch.Generator(device=device).manual_seed(s) for s in (seeds or [params.seed] * b)]

    def choose(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Next token of each active row, constrained rows masked to their legal tokens."""
        if constrained:
            picked = [r for r, i in enumerate(rows) if matchers[i] is not None]
            if picked:
                from interplay.backends.constrained import apply_mask

                allowed = constrainer.mask([matchers[rows[r]] for r in picked],
                                           [len(generated[rows[r]]) >= params.max_new_tokens for r in picked])
                logits = logits.clone()
                logits[picked] = apply_mask(logits[picked], allowed)
        return _next_tokens(logits, params, gens and [gens[i] for i in rows])

    nxt = choose(torch.cat(first_logits), active)
    step = 0
    while True:
        still = []  # rows not done after this step; finished rows leave the batch at once
        for row, i in enumerate(active):
            tok = int(nxt[row])
            generated[i].append(tok)
            m = matchers[i]
            if m is not None:
                # a legal turn ends exactly when the grammar is complete; past max_new_tokens the
                # row is being closed, within the close budget
                if not m.consume_token(tok):
                    raise RuntimeError(f"constrained decoding chose a token the grammar refuses: {m.get_error()}")
                done = tok in eos or m.is_stopped() or len(generated[i]) >= budget
            else:
                done = tok in eos or len(generated[i]) >= params.max_new_tokens
            if not done and stops:
                text = tokenizer.decode(generated[i][-tail:], skip_special_tokens=False)
                done = any(s in text for s in stops)
            if not done:
                still.append(row)
                continue
            # its cache holds the prompt and all generated tokens but this last one
            n = lengths[i] + len(generated[i]) - 1
            end = width + step
            if store is not None and keys[i] is not None and (keep is None or keep[i]):
                store.put(keys[i], prompt_ids[i] + generated[i][:-1],
                          _entry_block(cache.layers, row, end - n, end, store.dtype))
        if not still:
            break
        if len(still) < len(active):
            index = torch.tensor(still, device=device)
            cache.batch_select_indices(index)
            mask, positions, nxt = mask[index], positions[index], nxt[index]
            active = [active[r] for r in still]
        step += 1
        mask[:, width + step - 1] = 1
        out = model(input_ids=nxt.unsqueeze(1), past_key_values=cache, use_cache=True,
                    attention_mask=mask[:, : width + step], position_ids=positions.unsqueeze(1))
        positions = positions + 1
        cache = out.past_key_values
        nxt = choose(out.logits[:, -1, :], active)
    return generated
