"""Top-k catalogue titles by log-likelihood after an open ``<movie_title>`` tag: exact
(:func:`rank_titles`) or by beam search (:func:`beam_rank_titles`, minutes faster on a CPU).

A title's score is the sum of the log-probabilities of the token ids of ``title + close_tag``
(tokenized together) given the prompt. :class:`TitleTrie` shares the common token prefixes of all
titles; :func:`rank_titles` runs a best-first branch-and-bound search over it:

* a node's score is the log-probability of its token prefix; every log-probability is <= 0, so
  the score of any title below a node is at most the node's score (an upper bound);
* the frontier is a max-heap of nodes by score; each step pops up to ``batch_size`` of the best
  nodes, gets their next-token distributions in ONE batched forward pass, and pushes their
  children (parent score + child token log-probability); a child that ends a title's sequence
  completes that title with its exact score;
* the search stops once k titles are complete and the best frontier score is <= the k-th best
  complete score: no unexpanded node can hold a better title, so the top k are exact (up to
  ties in score and floating-point rounding between batched and unbatched forward passes).

:func:`beam_rank_titles` is the cheap approximation: it walks the trie one token depth at a time
and keeps only the ``beam`` likeliest unfinished prefixes at each depth (and only those that can
still beat the k-th complete title). Its cost is at most depth x beam node expansions whatever
the catalogue size. Every title it returns carries its exact score; only titles under a dropped
prefix can be missing. The result is certified exact when no dropped prefix scored above the
final k-th title (a prefix's score bounds every title below it).

Log-softmax is taken in float64: in float32, a peaked distribution (one logit far above ~50k
small ones) loses ~1e-4 per token in the normalizer's sum, enough to reorder close titles.

The prompt is run once (its KV cache kept); each batch runs only the popped nodes' token paths
(the few tokens from the title start to the node) on top of that prompt KV. Paths are padded on
the LEFT of the new columns (masked, with explicit position ids), so every row's last real token
is in the last column and only one position's logits per row are computed (right padding would
need logits at every distinct path end: up to ~20 x [rows, vocab]).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import torch


@dataclass
class RankResult:
    """One search's top titles and what it cost."""

    titles: list[str]  # best first, at most k
    scores: list[float]  # matching log-likelihoods
    expanded: int  # trie nodes expanded (the root, i.e. the prompt pass, included)
    forward_passes: int  # the prompt pass included
    exact: bool  # False when max_expansions stopped the search early


class TitleTrie:
    """Token trie of title + close-tag sequences for one tokenizer; build once per catalogue."""

    def __init__(self, tokenizer, titles: list[str], close_tag: str = "</movie_title>"):
        self.close_tag = close_tag
        self.parent: list[int] = [-1]
        self.token: list[int] = [-1]
        self.children: list[dict[int, int]] = [{}]
        self.ends: list[list[str]] = [[]]  # titles whose sequence ends at the node (duplicates kept)
        for title in titles:
            node = 0
            for tok in tokenizer(title + close_tag, add_special_tokens=False)["input_ids"]:
                child = self.children[node].get(tok)
                if child is None:
                    child = len(self.parent)
                    self.children[node][tok] = child
                    self.parent.append(node)
                    self.token.append(tok)
                    self.children.append({})
                    self.ends.append([])
                node = child
            self.ends[node].append(title)

    def __len__(self) -> int:
        """Number of nodes, root included."""
        return len(self.parent)

    def path(self, node: int) -> list[int]:
        """Token ids from the title start to ``node``."""
        out = []
        while node > 0:
            out.append(self.token[node])
            node = self.parent[node]
        return out[::-1]


def _next_logprobs(model, prompt_kv: list, n_prompt: int, paths: list[list[int]]) -> torch.Tensor:
    """Next-token log-softmax ``[rows, vocab]`` after prompt + each path, in one forward pass
    over the shared prompt KV (expanded to the batch; the cache's update copies it)."""
    from transformers import DynamicCache

    device, rows, width = model.device, len(paths), max(len(p) for p in paths)
    cache = DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                                         for k, v in prompt_kv])
    ids = torch.zeros((rows, width), dtype=torch.long, device=device)
    positions = torch.full((rows, width), n_prompt, dtype=torch.long, device=device)
    mask = torch.zeros((rows, n_prompt + width), dtype=torch.long, device=device)
    mask[:, :n_prompt] = 1
    for r, p in enumerate(paths):  # left-padded: real tokens in the last len(p) columns
        n = len(p)
        ids[r, width - n:] = torch.tensor(p, device=device)
        positions[r, width - n:] = torch.arange(n_prompt, n_prompt + n, device=device)
        mask[r, n_prompt + width - n:] = 1
    out = model(input_ids=ids, past_key_values=cache, attention_mask=mask, position_ids=positions,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].double().log_softmax(-1)


def rank_titles(model, prompt_ids: list[int], trie: TitleTrie, k: int = 50, batch_size: int = 64,
                max_expansions: int = 20000) -> RankResult:
    """The ``k`` titles of ``trie`` most likely after ``prompt_ids`` (which end right after the
    open tag), best first, by best-first branch and bound (see the module docstring)."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    best: list[tuple[float, int, str]] = []  # min-heap of the k best complete titles
    frontier: list[tuple[float, int, int]] = []  # (-score, tie-break, node)
    order = itertools.count()

    def bar() -> float:  # the score a title must beat to enter the top k
        return best[0][0] if len(best) >= k else -math.inf

    def complete(node: int, score: float) -> None:
        for title in trie.ends[node]:
            item = (score, next(order), title)
            if len(best) < k:
                heapq.heappush(best, item)
            elif score > best[0][0]:
                heapq.heapreplace(best, item)

    def grow(node: int, score: float, logprobs: torch.Tensor) -> None:
        kids = list(trie.children[node].items())
        values = logprobs[[tok for tok, _ in kids]].tolist()
        for (_, child), lp in zip(kids, values):
            s = score + lp
            complete(child, s)
            if trie.children[child] and s > bar():
                heapq.heappush(frontier, (-s, next(order), child))

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids], device=model.device), use_cache=True, logits_to_keep=1)
        prompt_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        complete(0, 0.0)
        grow(0, 0.0, out.logits[0, -1].double().log_softmax(-1))
        expanded = passes = 1
        while frontier and -frontier[0][0] > bar() and expanded < max_expansions:
            batch = []
            while frontier and len(batch) < min(batch_size, max_expansions - expanded) and -frontier[0][0] > bar():
                neg, _, node = heapq.heappop(frontier)
                batch.append((node, -neg))
            logprobs = _next_logprobs(model, prompt_kv, len(prompt_ids), [trie.path(n) for n, _ in batch])
            passes += 1
            expanded += len(batch)
            for row, (node, score) in enumerate(batch):
                grow(node, score, logprobs[row])
    exact = not (frontier and -frontier[0][0] > bar())
    ranked = sorted(best, key=lambda item: (-item[0], item[1]))
    return RankResult([t for _, _, t in ranked], [s for s, _, _ in ranked], expanded, passes, exact)


def beam_rank_titles(model, prompt_ids: list[int], trie: TitleTrie, k: int = 50, beam: int = 64) -> RankResult:
    """Approximately the ``k`` titles of ``trie`` most likely after ``prompt_ids``, best first, by
    beam search over the trie (see the module docstring). ``exact`` is True when the beam provably
    lost nothing (no dropped prefix could hold a title above the k-th returned). The beam is at
    least ``k`` wide (a narrower one could not complete k titles).

    All prefixes of one depth have the same length, so each depth is one forward pass of one new
    token per kept prefix on top of a KV cache whose rows are those prefixes' (reordered from the
    parents' rows): no padding and no path recomputed."""
    if k < 1 or beam < 1:
        raise ValueError(f"k and beam must be positive, got k={k}, beam={beam}")
    beam = max(beam, k)
    best: list[tuple[float, int, str]] = []  # min-heap of the k best complete titles
    order = itertools.count()
    dropped = -math.inf  # best score of a prefix the beam dropped

    def bar() -> float:
        return best[0][0] if len(best) >= k else -math.inf

    def children(node: int, row: int, score: float, logprobs: torch.Tensor) -> list[tuple[float, int, int]]:
        """(score, child, parent's cache row) of the unfinished children; completes the others."""
        kids = list(trie.children[node].items())
        values = logprobs[[tok for tok, _ in kids]].tolist()
        out = []
        for (_, child), lp in zip(kids, values):
            for title in trie.ends[child]:
                item = (score + lp, next(order), title)
                if len(best) < k:
                    heapq.heappush(best, item)
                elif score + lp > best[0][0]:
                    heapq.heapreplace(best, item)
            if trie.children[child]:
                out.append((score + lp, child, row))
        return out

    device = model.device
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        layer = children(0, 0, 0.0, out.logits[0, -1].double().log_softmax(-1))
        expanded = passes = 1
        position = len(prompt_ids)
        while layer:
            layer = sorted((c for c in layer if c[0] > bar()), key=lambda c: -c[0])
            if len(layer) > beam:
                dropped = max(dropped, layer[beam][0])
                layer = layer[:beam]
            if not layer:
                break
            cache.reorder_cache(torch.tensor([row for _, _, row in layer], device=device))
            ids = torch.tensor([[trie.token[node]] for _, node, _ in layer], device=device)
            positions = torch.full((len(layer), 1), position, dtype=torch.long, device=device)
            out = model(input_ids=ids, past_key_values=cache, position_ids=positions, use_cache=True,
                        logits_to_keep=1)
            cache, position = out.past_key_values, position + 1
            logprobs = out.logits[:, -1].double().log_softmax(-1)
            passes += 1
            expanded += len(layer)
            layer = [c for row, (score, node, _) in enumerate(layer) for c in children(node, row, score, logprobs[row])]
    ranked = sorted(best, key=lambda item: (-item[0], item[1]))
    return RankResult([t for _, _, t in ranked], [s for s, _, _ in ranked], expanded, passes, dropped <= bar())
