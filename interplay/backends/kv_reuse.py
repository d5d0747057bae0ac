"""Per-episode KV reuse: keep each conversation's cache so a turn's prefill covers only new tokens.

An agent's prompt at turn t+1 is its prompt at turn t, its own reply, and the other side's reply.
:class:`~interplay.backends.prefix_store.PrefixKVStore` keeps, per cache key (one per episode and role), the token ids the model has
already processed and their per-layer keys/values, evicting the least recently used entries beyond
a byte budget. :func:`generate_reusing_prefix` prefills each prompt from the longest common token
prefix with its stored entry (only the new tokens, a few prompts per forward pass, written straight
into the batch's preallocated buffers), then decodes all prompts of the batch together (one
decode column for all rows, masked padding, explicit positions) and stores every sequence's cache
back for its next turn. A stored entry that does not match (a re-rendered history, a retry) only
costs the reuse: the common prefix is recomputed from the first differing token. The store may
keep its entries in files (``spill_dir``) instead of memory.
"""

from __future__ import annotations

import time

import torch
from transformers.cache_utils import DynamicLayer

from interplay.backends.base import GenerationParams
from interplay.backends.decoding_controls import RowControls, choose_tokens, in_title
from interplay.backends.prefix_store import KV, PrefixKVStore
from interplay.protocol import RESPONSE_CLOSE

__all__ = ["KV", "PrefixKVStore", "generate_reusing_prefix"]


def _preallocated_layer(shape: tuple[int, int, int, int], dtype: torch.dtype, device, length: int):
    """A decode-time cache layer over zeroed buffers of ``shape`` ``[batch, kv_heads, capacity,
    head_dim]``, the first ``length`` positions in use: it writes each step's keys/values in place
    instead of concatenating (which copies the whole cache at every step)."""
    layer = BufferLayer(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
    layer.view(0, length)
    return layer


class BufferLayer(DynamicLayer):
    """A cache layer over columns ``[start, end)`` of preallocated ``kbuf``/``vbuf`` (``[rows,
    kv_heads, capacity, head_dim]``): the model sees that window, and each forward pass writes
    its keys/values in place after it (no concatenation, which copies the whole cache)."""

    def __init__(self, kbuf: torch.Tensor, vbuf: torch.Tensor):
        super().__init__()
        self.kbuf, self.vbuf = kbuf, vbuf
        self.dtype, self.device, self.is_initialized = kbuf.dtype, kbuf.device, True
        self.start = 0

    def view(self, start: int, end: int) -> None:
        self.start = start
        self.keys, self.values = self.kbuf[:, :, start:end], self.vbuf[:, :, start:end]

    def rows(self, first: int, last: int, start: int, end: int) -> BufferLayer:
        """A layer over rows ``[first, last)`` and columns ``[start, end)`` of the same buffers."""
        layer = type(self)(self.kbuf[first:last], self.vbuf[first:last])
        layer.view(start, end)
        return layer

    def update(self, key_states, value_states, *args, **kwargs):
        n, k = self.start + self.keys.shape[-2], key_states.shape[-2]
        self.kbuf[:, :, n:n + k] = key_states
        self.vbuf[:, :, n:n + k] = value_states
        self.view(self.start, n + k)
        return self.keys, self.values

    def fill_holes(self, moves: list[tuple[int, int]], rows: int) -> None:
        """Copy row ``src`` into row ``dst`` for each move (over the columns in use), then keep
        the first ``rows`` rows: leaving rows cost a row copy each, not a copy of the batch."""
        n = self.start + self.keys.shape[-2]
        for dst, src in moves:
            self.kbuf[dst, :, :n] = self.kbuf[src, :, :n]
            self.vbuf[dst, :, :n] = self.vbuf[src, :, :n]
        self.kbuf, self.vbuf = self.kbuf[:rows], self.vbuf[:rows]
        self.view(self.start, n)


def _entry_block(layers, row: int, spans: list[tuple[int, int]], dtype: torch.dtype | None = None) -> KV:
    """One row's keys/values over the buffer column ranges ``spans`` (in order), copied into a single
    contiguous block (one allocation per stored conversation instead of two per layer: less heap
    fragmentation), returned as per-layer views; stored as ``dtype`` when given, unless a value
    overflows it."""
    k0 = layers[0].kbuf
    total = sum(end - start for start, end in spans)
    block = k0.new_empty((len(layers), 2, 1, k0.shape[1], total, k0.shape[3]), dtype=dtype or k0.dtype)
    for i, layer in enumerate(layers):
        at = 0
        for start, end in spans:
            block[i, 0, 0, :, at:at + end - start].copy_(layer.kbuf[row, :, start:end])
            block[i, 1, 0, :, at:at + end - start].copy_(layer.vbuf[row, :, start:end])
            at += end - start
    if block.dtype != k0.dtype and not torch.isfinite(block).all():
        return _entry_block(layers, row, spans)
    return [(block[i, 0], block[i, 1]) for i in range(len(layers))]


def _fill_holes_order(still: list[int], rows: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Rows that stay (``still``, ascending, out of ``rows``) packed into the first ``len(still)``
    slots by moving the last staying rows into the slots of leaving ones: the old row of each new
    slot, and the ``(dst, src)`` row copies that do it."""
    m = len(still)
    staying = set(still)
    holes = [r for r in range(m) if r not in staying]
    movers = [r for r in range(m, rows) if r in staying]
    order = list(range(m))
    for dst, src in zip(holes, movers):
        order[dst] = src
    return order, list(zip(holes, movers))


#: prompts prefilled together in one forward pass, grouped by length (measured on 2 CPU cores, 16
#: prompts of 100-160 new tokens over 200 stored ones: 805-844 tok/s in fours, 729 one at a time;
#: unsorted, the padding ate the gain; first turns of ~190 tokens: 961-984 vs 887-894 tok/s)
PREFILL_GROUP = 4


def generate_reusing_prefix(model, tokenizer, prompts: list[str], params: GenerationParams,
                            keys: list[str | None], store: PrefixKVStore | None,
                            seeds: list[int] | None = None, keep: list[bool] | None = None,
                            constraints: list | None = None, constrainer=None,
                            timing: dict | None = None,
                            row_params: list[GenerationParams] | None = None) -> list[list[int]]:
    """Generated token ids for each prompt (up to and including EOS or the token that completes a
    stop string), reusing and then updating ``store``'s entry under each prompt's key (no reuse
    when ``store`` is None). Sampled decoding draws each prompt's tokens from a generator seeded
    with its own seed (``seeds``, default ``params.seed``). ``keep[i]`` false: prompt ``i`` reuses
    its stored entry but is not stored back.

    ``row_params[i]`` (default ``params`` for every row) are prompt ``i``'s own settings: its turn
    cap (``max_new_tokens``), sampling and repetition controls
    (:mod:`interplay.backends.decoding_controls`); ``params.stop`` ends every row.

    ``constraints[i]`` (a :class:`~interplay.backends.constrained.TurnConstraint`, or None for
    free text) makes ``constrainer`` mask row ``i``'s logits before argmax / sampling, so it can
    only produce a legal turn; its row ends when the turn is complete. A constrained row that
    reaches ``max_new_tokens`` is closed (only turn-ending tokens) within the constrainer's
    close budget. Unconstrained rows of the same batch are untouched.

    ``timing`` (a dict) accumulates where the call's time went: ``prefill_s`` (stored prefixes
    placed and new tokens prefilled), ``decode_s`` (decode forward passes), ``compact_s`` (rows
    leaving the batch), ``other_s`` (the rest: token choice, stop checks, stores), ``steps``
    (decode steps), ``row_steps`` (rows decoded, summed over steps) and ``context_row_steps``
    (the tokens each decoded row attended to, summed)."""
    from transformers import DynamicCache

    t_call = time.perf_counter()
    timing = timing if timing is not None else {}
    for name in ("prefill_s", "decode_s", "compact_s", "other_s", "steps", "row_steps", "context_row_steps", "calls"):
        timing.setdefault(name, 0)
    timing["calls"] += 1
    spent = {name: timing[name] for name in ("prefill_s", "decode_s", "compact_s")}

    device = model.device
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    b = len(prompts)
    lengths = [len(ids) for ids in prompt_ids]
    matchers = [None] * b
    if constraints is not None and any(c is not None for c in constraints):
        matchers = [constrainer.matcher(c) if c is not None else None for c in constraints]
    constrained = any(m is not None for m in matchers)
    rows_params = list(row_params) if row_params is not None else [params] * b
    if len(rows_params) != b:
        raise ValueError(f"{len(rows_params)} row params for {b} prompts")
    caps = [p.max_new_tokens for p in rows_params]  # each row's turn cap
    close = constrainer.close_budget(constraints) if constrained else 0
    budgets = [cap + (close if matchers[i] is not None else 0) for i, cap in enumerate(caps)]
    budget = max(budgets)
    controls = []
    for p in rows_params:
        partner = (tokenizer(p.partner_turn, add_special_tokens=False)["input_ids"]
                   if p.partner_no_repeat_ngram > 0 and p.partner_turn else [])
        own = ([tokenizer(t, add_special_tokens=False)["input_ids"] for t in p.own_turns]
               if p.own_no_repeat_ngram > 0 else [])
        controls.append(RowControls(p, partner, own))
    starts = [0] * b
    seen: set[str] = set()
    for i, (ids, key) in enumerate(zip(prompt_ids, keys)):
        if store is None:
            continue
        # a key twice in one batch: only its first prompt reuses (the entry is taken out once)
        again = key in seen
        if key is not None:
            seen.add(key)
        starts[i] = 0 if again else store.match(key, ids)
        store.stats["reused_tokens"] += starts[i]
        store.stats["prefilled_tokens"] += len(ids) - starts[i]
        if key is not None and not starts[i] and not again:
            store.drop(key)  # nothing reusable; the entry is replaced when this prompt is done

    # Layout. Rows are ordered by their number of new tokens and prefilled PREFILL_GROUP at a time,
    # straight into the batch's buffers. Within a group the new tokens start at one column
    # ``cut[g]``, each row's stored prefix just before it; a row with fewer new tokens than the
    # group's longest leaves masked padding after them. Every row's prompt ends by column
    # ``width``, where decoding starts for all rows.
    order = sorted(range(b), key=lambda i: lengths[i] - starts[i])  # similar lengths together: little padding
    groups = [order[g:g + PREFILL_GROUP] for g in range(0, b, PREFILL_GROUP)]
    longest = [max(lengths[i] - starts[i] for i in group) for group in groups]
    width = max(max(starts[i] for i in group) + n for group, n in zip(groups, longest))
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache = DynamicCache()
    cache.layers = [_preallocated_layer((b, heads, width + budget, head_dim), model.dtype, device, width)
                    for _ in range(config.num_hidden_layers)]
    spans: list[tuple[int, int]] = [(0, 0)] * b  # each sequence's prompt columns
    for g, (group, n_new) in enumerate(zip(groups, longest)):
        cut = width - n_new
        for r, i in enumerate(group):
            spans[i] = (cut - starts[i], cut + lengths[i] - starts[i])
            if starts[i]:  # the stored prefix, taken out of the store straight into the buffers, one at a time
                row, st = g * PREFILL_GROUP + r, starts[i]
                for layer, (k, v) in zip(cache.layers, store.take(keys[i])):
                    layer.kbuf[row, :, cut - st:cut] = k[0, :, :st]
                    layer.vbuf[row, :, cut - st:cut] = v[0, :, :st]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    first_logits: list = [None] * b
    for g, (group, n_new) in enumerate(zip(groups, longest)):
        cut, first = width - n_new, g * PREFILL_GROUP
        lo = cut - max(starts[i] for i in group)  # the group's window: its longest prefix and new tokens
        news = [lengths[i] - starts[i] for i in group]
        ids = torch.full((len(group), n_new), pad_id, dtype=torch.long, device=device)
        positions = torch.zeros((len(group), n_new), dtype=torch.long, device=device)
        mask = torch.zeros((len(group), width - lo), dtype=torch.long, device=device)
        for r, (i, n) in enumerate(zip(group, news)):
            ids[r, :n] = torch.tensor(prompt_ids[i][starts[i]:], device=device)
            positions[r] = torch.arange(starts[i], starts[i] + n_new, device=device)
            mask[r, spans[i][0] - lo:spans[i][1] - lo] = 1
        window = DynamicCache()
        window.layers = [layer.rows(first, first + len(group), lo, cut) for layer in cache.layers]
        last = sorted({n - 1 for n in news})
        # logits of each row's last token only: a full [len, vocab] logits tensor per prompt (118 MB
        # for 600 tokens of a 49k vocabulary in float32) was most of the server's memory when kept alive
        out = model(input_ids=ids, past_key_values=window, position_ids=positions, attention_mask=mask,
                    use_cache=True, logits_to_keep=torch.tensor(last, device=device))
        for r, (i, n) in enumerate(zip(group, news)):
            first_logits[i] = out.logits[r:r + 1, last.index(n - 1)]
        del out, window
    timing["prefill_s"] += time.perf_counter() - t_call
    mask = torch.zeros((b, width + budget), dtype=torch.long, device=device)
    for row, i in enumerate(order):
        mask[row, spans[i][0]:spans[i][1]] = 1
    positions = torch.tensor([lengths[i] for i in order], device=device)

    eos_cfg = getattr(model.generation_config, "eos_token_id", None)  # what model.generate stops on
    if eos_cfg is None:
        eos_cfg = tokenizer.eos_token_id
    eos = set(eos_cfg if isinstance(eos_cfg, list) else [eos_cfg]) - {None}
    # what ends a turn: end of sequence, and </response> where it is one token (the added tokens)
    close_id = tokenizer.convert_tokens_to_ids(RESPONSE_CLOSE)
    end_ids = sorted(eos | ({close_id} if isinstance(close_id, int) and close_id != tokenizer.unk_token_id else set()))
    stops = [s for s in params.stop if s]
    tail = max((len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops), default=1) + 2

    generated: list[list[int]] = [[] for _ in range(b)]
    active = list(order)  # sequence index of each row still in the batch
    row_seeds = seeds or [p.seed for p in rows_params]
    gens = [torch.Generator(device=device).manual_seed(s) if c.params.temperature > 0 else None
            for s, c in zip(row_seeds, controls)]

    def choose(logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """Next token of each active row under its controls, constrained rows masked to their legal tokens."""
        mask = None
        if constrained:
            picked = [r for r, i in enumerate(rows) if matchers[i] is not None]
            if picked:
                from interplay.backends.constrained import apply_mask

                allowed = constrainer.mask([matchers[rows[r]] for r in picked],
                                           [len(generated[rows[r]]) >= caps[rows[r]] for r in picked])

                def mask(scores: torch.Tensor) -> torch.Tensor:
                    scores = scores.clone()
                    scores[picked] = apply_mask(scores[picked], allowed)
                    return scores

        def exempt(r: int) -> bool:  # inside a title: a catalogue name, no repetition controls
            return in_title(tokenizer.decode(generated[rows[r]], skip_special_tokens=False))

        def says_again(r: int) -> bool:  # the turn so far has the words of an earlier own turn
            return controls[rows[r]].says_again(tokenizer.decode(generated[rows[r]], skip_special_tokens=False))

        return choose_tokens(logits, [controls[i] for i in rows], [generated[i] for i in rows], mask,
                             [gens[i] for i in rows], exempt, says_again, end_ids)

    nxt = choose(torch.cat([first_logits[i] for i in active]), active)
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
                done = tok in eos or m.is_stopped() or len(generated[i]) >= budgets[i]
            else:
                done = tok in eos or len(generated[i]) >= caps[i]
            if not done and stops:
                text = tokenizer.decode(generated[i][-tail:], skip_special_tokens=False)
                done = any(s in text for s in stops)
            if not done:
                still.append(row)
                continue
            # its cache holds the prompt and all generated tokens but this last one
            if store is not None and keys[i] is not None and (keep is None or keep[i]):
                store.put(keys[i], prompt_ids[i] + generated[i][:-1],
                          _entry_block(cache.layers, row, [spans[i], (width, width + step)], store.dtype))
        if not still:
            break
        if len(still) < len(active):
            t_compact = time.perf_counter()
            order, moves = _fill_holes_order(still, len(active))
            for layer in cache.layers:
                layer.fill_holes(moves, len(still))
            index = torch.tensor(order, device=device)
            mask, positions, nxt = mask[index], positions[index], nxt[index]
            active = [active[r] for r in order]
            timing["compact_s"] += time.perf_counter() - t_compact
        step += 1
        mask[:, width + step - 1] = 1
        t_step = time.perf_counter()
        out = model(input_ids=nxt.unsqueeze(1), past_key_values=cache, use_cache=True,
                    attention_mask=mask[:, : width + step], position_ids=positions.unsqueeze(1))
        timing["decode_s"] += time.perf_counter() - t_step
        timing["steps"] += 1
        timing["row_steps"] += len(active)
        timing["context_row_steps"] += int(positions.sum())  # tokens attended to, over the rows
        positions = positions + 1
        cache = out.past_key_values
        nxt = choose(out.logits[:, -1, :], active)
    timing["other_s"] += (time.perf_counter() - t_call) - sum(timing[n] - spent[n] for n in spent)
    return generated
