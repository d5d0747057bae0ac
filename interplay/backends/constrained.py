"""Constrained decoding: llguidance token masks that let a model produce only legal turns.

A request carries a :class:`TurnConstraint` (the actions allowed this turn, the key of a
catalogue registered with the backend, the text already prefilled in the prompt). A
:class:`TurnConstrainer` (one per tokenizer) compiles the turn grammar of
:mod:`interplay.turn_grammar` with llguidance once per (catalogue, actions, prefill), copies the
compiled matcher for each request, and computes each row's allowed-token mask per decode step.
A constraint narrowed to a few of the catalogue's ``titles`` (a recommender's candidates) or with
titles excluded (those already named in the episode) compiles its own grammar; the most recent
:data:`NARROWED_CACHE` of those are kept.

Why llguidance: on this machine's catalogue (14.6k titles) the grammar compiles in 0.28 s and a
mask, unpacked for the decode loop, takes ~0.1 ms (``benchmarks/grammar_scaling.py``); xgrammar
needed 31 s to compile a 13.8k-title alternation (``docs/structured_turns.md``). vLLM's structured outputs accept the same Lark grammar
(``guidance`` backend).

A turn cannot be cut at ``max_new_tokens`` without becoming illegal, so a constrained row that
reaches it is *closed* instead: from then on only tokens that end the turn are allowed (a token
holding ``</`` where one is legal, else one holding ``<`` to open the title a recommendation still
needs, else what the grammar allows inside a tag or title, which ends within the longest title),
for at most :meth:`TurnConstrainer.close_budget` more tokens.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from interplay.backends.base import TurnConstraint, constraint_titles
from interplay.turn_grammar import GrammarError, check_actions, token_literal, turn_grammar

#: compiled grammars kept for constraints narrowed per turn (a title list or exclusions: each turn has its own)
NARROWED_CACHE = 512
#: and at most this many titles over all of them: a compiled grammar of the whole catalogue less a
#: few titles (``titles="new"``) holds ~10 MB (14.6k titles, measured), a few candidates' next to nothing
NARROWED_TITLES = 300_000


def _limits(n_titles: int):
    """Parser limits sized for the catalogue: the title alternation is one large lexeme, which
    llguidance's default lexer fuel refuses beyond ~50k titles."""
    import llguidance

    if n_titles <= 20_000:
        return None
    scale = max(1, n_titles // 20_000 + 1)
    return llguidance.LLParserLimits(initial_lexer_fuel=1_000_000 * scale * 4, max_grammar_size=500_000 * scale,
                                     max_lexer_states=250_000 * scale)


class TurnConstrainer:
    """Token masks for the legal turns of one tokenizer (thread-safe compile cache)."""

    def __init__(self, tokenizer, vocab_size: int | None = None):
        import llguidance.hf

        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size or len(tokenizer))
        self.llt = llguidance.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size)
        self.literal = token_literal(tokenizer)
        self.catalogues: dict[str, list[str]] = {}
        #: per catalogue, the titles this tokenizer cannot spell (left out of the grammar)
        self.unspellable: dict[str, list[str]] = {}
        self._title_tokens: dict[str, int] = {}
        self._compiled: dict[TurnConstraint, object] = {}
        self._narrowed: OrderedDict[TurnConstraint, object] = OrderedDict()  # LRU, per-turn title lists
        self._narrowed_titles: dict[TurnConstraint, int] = {}  # titles in each kept narrowed grammar
        self._narrowed_total = 0  # their sum
        #: seconds computing masks, rows masked, grammars compiled and their seconds
        self.stats = {"mask_s": 0.0, "masked_tokens": 0, "grammars": 0, "compile_s": 0.0}
        self._lock = threading.Lock()
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        closing = torch.zeros(self.vocab_size, dtype=torch.bool)
        opening = torch.zeros(self.vocab_size, dtype=torch.bool)
        for i, piece in enumerate(pieces):
            if piece:
                closing[i] = "</" in piece  # e.g. "></" ends a title tag and starts </response>
                opening[i] = "<" in piece
        self._closing, self._opening = closing, opening

    def register_catalogue(self, key: str, titles: Sequence[str]) -> None:
        """Make the titles usable as ``TurnConstraint.catalogue == key``. A title the tokenizer
        cannot spell (its ids do not decode back to it, e.g. a character whose bytes have no
        token) could never be generated: it is left out and listed in :attr:`unspellable`."""
        with self._lock:
            if key in self.catalogues:
                return
            kept, longest, bad = [], 0, []
            for t in dict.fromkeys(titles):
                if not t:
                    continue
                ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
                if self.tokenizer.decode(ids) != t:
                    bad.append(t)
                    continue
                kept.append(t)
                longest = max(longest, len(ids))
            self.catalogues[key] = kept
            self.unspellable[key] = bad
            self._title_tokens[key] = longest

    def close_budget(self, constraints: Sequence[TurnConstraint | None]) -> int:
        """Tokens a row may take past ``max_new_tokens`` to close its turn."""
        longest = max((self._title_tokens.get(c.catalogue, 0) for c in constraints if c and c.catalogue), default=0)
        return longest + 32

    def validate(self, constraint: TurnConstraint) -> None:
        """Raise :class:`GrammarError` if no legal turn satisfies ``constraint``."""
        self._template(constraint)

    def _template(self, constraint: TurnConstraint):
        import llguidance

        with self._lock:
            cache = self._narrowed if constraint.narrowed else self._compiled
            hit = cache.get(constraint)
            if hit is not None:
                if constraint.narrowed:
                    self._narrowed.move_to_end(constraint)
                return hit
            if constraint.catalogue is not None and constraint.catalogue not in self.catalogues:
                raise GrammarError(f"catalogue {constraint.catalogue!r} was never registered with this backend")
            if constraint.narrowed and constraint.catalogue is None:
                raise GrammarError("a constraint narrowed to titles needs the catalogue they come from")
            titles = constraint_titles(constraint, self.catalogues)  # spellable ones; None: any title
            check_actions(constraint.role, constraint.actions, titles is None or bool(titles))
            t0 = time.perf_counter()
            grammar = turn_grammar(constraint.actions, titles, constraint.role, self.literal)
            matcher = llguidance.LLMatcher(self.llt, grammar, log_level=0, limits=_limits(len(titles or [])))
            self.stats["grammars"] += 1
            self.stats["compile_s"] += time.perf_counter() - t0
            if matcher.is_error():
                raise GrammarError(f"turn grammar rejected by llguidance: {matcher.get_error()}")
            if constraint.prefill:
                ids = self.tokenizer(constraint.prefill, add_special_tokens=False)["input_ids"]
                if not matcher.consume_tokens(ids):
                    raise GrammarError(f"the prompt's prefill {constraint.prefill!r} does not start a legal turn: "
                                       f"{matcher.get_error()}")
            cache[constraint] = matcher
            if constraint.narrowed:
                self._narrowed_titles[constraint] = len(titles or [])
                self._narrowed_total += len(titles or [])
                while len(self._narrowed) > 1 and (len(self._narrowed) > NARROWED_CACHE
                                                   or self._narrowed_total > NARROWED_TITLES):
                    old, _ = self._narrowed.popitem(last=False)
                    self._narrowed_total -= self._narrowed_titles.pop(old)
            return matcher

    def matcher(self, constraint: TurnConstraint):
        """A fresh matcher positioned after ``constraint.prefill``."""
        return self._template(constraint).deep_copy()

    def mask(self, matchers: Sequence, closing: Sequence[bool]) -> torch.Tensor:
        """Allowed tokens ``[rows, vocab_size]`` (bool) for each row's matcher (None: all
        allowed); a ``closing`` row is further restricted to tokens that end the turn."""
        import llguidance.torch as lgt

        t0 = time.perf_counter()
        rows = len(matchers)
        bits = lgt.allocate_token_bitmask(rows, self.vocab_size)
        for r, m in enumerate(matchers):
            if m is not None:
                lgt.fill_next_token_bitmask(m, bits, r)
        unpacked = np.unpackbits(bits.numpy().view(np.uint8), axis=1, bitorder="little")[:, : self.vocab_size]
        allowed = torch.from_numpy(unpacked.astype(bool))
        for r, (m, close) in enumerate(zip(matchers, closing)):
            if m is not None and close:
                for narrow in (self._closing, self._opening):
                    sub = allowed[r] & narrow
                    if sub.any():
                        allowed[r] = sub
                        break
        self.stats["mask_s"] += time.perf_counter() - t0
        self.stats["masked_tokens"] += sum(m is not None for m in matchers)
        return allowed


def apply_mask(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[rows, V]`` with disallowed tokens at -inf (tokens past the mask's width too)."""
    v = allowed.shape[1]
    out = logits.clone()
    out[:, :v] = out[:, :v].masked_fill(~allowed.to(out.device), float("-inf"))
    if out.shape[1] > v:
        out[:, v:] = float("-inf")
    return out
