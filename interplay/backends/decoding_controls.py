"""Per-row decoding controls of the batched decode loop: repetition bans and sampling.

Each request (row) of a batch carries its own :class:`~interplay.backends.base.GenerationParams`,
so a batch may mix roles, seeds and settings. At every decode step, :func:`choose_tokens` picks
each row's next token from its last-position logits in this order:

1. *repetition controls* on the row's own tokens of this turn (never the prompt): transformers'
   ``RepetitionPenaltyLogitsProcessor`` (``repetition_penalty``), ``NoRepeatNGramLogitsProcessor``
   (``no_repeat_ngram``: no token n-gram twice in the turn) and the same processor over the
   partner's last turn followed by the row's last ``n - 1`` tokens (``partner_no_repeat_ngram``:
   no n-gram of the partner's turn copied; the partner's text is tokenized on its own, so its
   first word may be split differently than inside the prompt) and the same over each of the
   speaker's own earlier turns of the episode (``own_no_repeat_ngram``), and with it no turn may
   end while its words (lower-cased, punctuation and title markup aside:
   :func:`interplay.metrics.core.tokens`) are those of an earlier turn of the speaker: the turn's
   end tokens are banned at that step (a short turn, or one changed only in case or spacing, is
   said again in other tokens than the n-gram ban sees). Inside a title (after
   ``<movie_title>``, until its ``</movie_title>``) the controls are off: a title is a catalogue
   name to spell, not wording to vary;
2. the turn grammar's mask (constrained rows); when the grammar leaves only banned tokens, the
   row takes its grammar-legal tokens without the bans for that step (a legal turn wins over a
   ban, e.g. a title that repeats a word);
3. greedy argmax (``temperature == 0``), or transformers' ``TemperatureLogitsWarper`` and
   ``TopPLogitsWarper`` and a draw from the row's own seeded generator, so a row's sample does
   not depend on the batch it ran in.

Rows with every control off and greedy decoding take the plain argmax of the model's logits: the
same tokens as before these controls existed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers.generation.logits_process import (
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from interplay.backends.base import GenerationParams
from interplay.metrics.core import tokens
from interplay.protocol import RESPONSE_OPEN, TITLE_CLOSE, TITLE_OPEN


class RowControls:
    """The logits processors of one request: built once per request, applied at every step."""

    def __init__(self, params: GenerationParams, partner_ids: Sequence[int] = (),
                 own_ids: Sequence[Sequence[int]] = ()):
        self.params = params
        self.penalty = (RepetitionPenaltyLogitsProcessor(params.repetition_penalty)
                        if params.repetition_penalty != 1.0 else None)
        self.ngram = NoRepeatNGramLogitsProcessor(params.no_repeat_ngram) if params.no_repeat_ngram > 0 else None
        n = params.partner_no_repeat_ngram
        self.partner = NoRepeatNGramLogitsProcessor(n) if n > 0 and len(partner_ids) >= n else None
        self.partner_ids = list(partner_ids)
        n = params.own_no_repeat_ngram
        self.own_ids = [list(ids) for ids in own_ids if n > 0 and len(ids) >= n]
        self.own = NoRepeatNGramLogitsProcessor(n) if self.own_ids else None
        #: the word sequences of the speaker's earlier turns: this turn may not end on one of them
        self.own_words: frozenset[tuple[str, ...]] = frozenset(
            w for w in (tuple(tokens(t)) for t in params.own_turns) if w) if n > 0 else frozenset()
        self.warpers: list = []
        if params.temperature > 0:
            self.warpers.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                self.warpers.append(TopPLogitsWarper(params.top_p))

    @property
    def restricts(self) -> bool:
        """Whether any repetition control is on for this row."""
        return (self.penalty is not None or self.ngram is not None or self.partner is not None
                or self.own is not None or bool(self.own_words))

    def says_again(self, text: str) -> bool:
        """Whether the turn written so far (``text``, its response part after ``<response>`` when
        there is one) has the words of an earlier turn of the speaker."""
        if not self.own_words:
            return False
        cut = text.rfind(RESPONSE_OPEN)
        return tuple(tokens(text[cut + len(RESPONSE_OPEN):] if cut >= 0 else text)) in self.own_words

    @property
    def greedy(self) -> bool:
        return self.params.temperature <= 0

    def restrict(self, scores: torch.Tensor, generated: Sequence[int]) -> torch.Tensor:
        """``scores`` ``[1, V]`` after the repetition controls, given the row's tokens of this turn."""
        if not generated:
            return scores
        device = scores.device
        ids = torch.tensor([list(generated)], dtype=torch.long, device=device)
        if self.penalty is not None:
            scores = self.penalty(ids, scores)
        if self.ngram is not None:
            scores = self.ngram(ids, scores)
        for ban, others in ((self.partner, [self.partner_ids]), (self.own, self.own_ids)):
            if ban is None or len(generated) < ban.ngram_size - 1:
                continue
            n = ban.ngram_size  # another turn's tokens, then the row's last n - 1: no n-gram of that turn
            tail = list(generated[len(generated) - (n - 1):]) if n > 1 else []
            for ids in others:
                scores = ban(torch.tensor([ids + tail], dtype=torch.long, device=device), scores)
        return scores

    def warp(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ``[1, V]`` after temperature and top-p (sampled rows only)."""
        for w in self.warpers:
            scores = w(None, scores)
        return scores


def in_title(text: str) -> bool:
    """Whether ``text`` (a turn so far) ends inside a title: its last ``<movie_title>`` is not closed."""
    return text.rfind(TITLE_OPEN) > text.rfind(TITLE_CLOSE)


def choose_tokens(logits: torch.Tensor, controls: Sequence[RowControls], generated: Sequence[Sequence[int]],
                  mask: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  generators: Sequence[torch.Generator | None] | None = None,
                  exempt: Callable[[int], bool] | None = None,
                  says_again: Callable[[int], bool] | None = None, end_ids: Sequence[int] = ()) -> torch.Tensor:
    """The next token of each row of ``logits`` ``[rows, V]``: row ``r`` under ``controls[r]``,
    given its tokens so far ``generated[r]``; ``mask`` (optional) sets the tokens the turn
    grammar refuses to -inf in a ``[rows, V]`` tensor; sampled rows draw from ``generators[r]``;
    ``exempt(r)`` true: row ``r``'s repetition controls are off this step (inside a title);
    ``says_again(r)`` true: row ``r``'s turn so far has the words of an earlier turn of its
    speaker, so its turn-ending tokens ``end_ids`` are banned this step."""
    plain = all(c.greedy and not c.restricts for c in controls)
    if plain:  # the unmodified path: argmax of the (masked) model logits
        return (mask(logits) if mask is not None else logits).argmax(-1)
    scores = logits.float()
    restricted = torch.cat([c.restrict(scores[r:r + 1], generated[r])
                            if c.restricts and not (exempt is not None and exempt(r)) else scores[r:r + 1]
                            for r, c in enumerate(controls)])
    if end_ids and says_again is not None:
        for r, c in enumerate(controls):
            if c.own_words and says_again(r):
                restricted[r, list(end_ids)] = float("-inf")
    if mask is not None:
        legal = mask(restricted)
        stuck = torch.isinf(legal).all(-1) & ~torch.isinf(mask(scores)).all(-1)
        if bool(stuck.any()):  # the grammar leaves only banned tokens: legal turn first
            legal[stuck] = mask(scores)[stuck]
        restricted = legal
    out = torch.empty(len(controls), dtype=torch.long, device=logits.device)
    for r, c in enumerate(controls):
        row = restricted[r:r + 1]
        if c.greedy:
            out[r] = row.argmax(-1)[0]
            continue
        probs = torch.softmax(c.warp(row), dim=-1)[0]
        gen = generators[r] if generators is not None else None
        out[r] = torch.multinomial(probs, 1, generator=gen)[0]
    return out
