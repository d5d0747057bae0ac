"""Behaviour figures of dialogues, for simulated and human dialogues alike: does a side loop,
parrot its partner, or repeat itself, and how long do its turns and dialogues run?

A dialogue is its turns as ``(role, text)`` in order; texts are read as lower-cased word tokens
with title markup removed (:func:`interplay.metrics.core.tokens`). Per role:

``repeated_ngram_share``
    over the role's turns with at least one word n-gram (``n`` = :data:`REPEAT_N`): the mean share
    of a turn's n-grams that repeat an earlier n-gram of the same turn ((n-grams - distinct
    n-grams) / n-grams). "The movie is about a genius. The movie is about a genius." scores 0.5.
``copied_share``
    over the role's turns with at least one word n-gram (``n`` = :data:`COPY_N`) that directly
    follow a turn of the partner: the mean share of a turn's n-grams that also occur in that
    partner turn (1 = a word-for-word copy).
``self_repeat_rate``
    over the role's turns after its first in a dialogue: the share whose words are exactly those
    of an earlier turn of the same role in that dialogue (turns without words never count).
``words_per_turn``
    the mean number of words of the role's turns.

And over dialogues, ``turns_per_episode``: the mean number of turns. A figure with nothing to
average is None. :func:`behaviour_beside_people` puts a run's figures next to the same figures
of the human dialogues it drew its records from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from interplay.metrics.core import tokens
from interplay.protocol import Role

#: word n-gram size of the within-turn repetition figure
REPEAT_N = 3
#: word n-gram size of the copied-from-the-partner figure
COPY_N = 3

Dialogue = Sequence[tuple[Role, str]]


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The word n-grams of ``words``, in order (none when there are fewer than ``n`` words)."""
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def repeated_share(text: str, n: int = REPEAT_N) -> float | None:
    """Share of the turn's word n-grams that repeat an earlier one of the same turn (None: no n-gram)."""
    grams = ngrams(tokens(text), n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else None


def copied_share(text: str, partner: str, n: int = COPY_N) -> float | None:
    """Share of the turn's word n-grams that occur in ``partner`` (None: the turn has no n-gram)."""
    grams = ngrams(tokens(text), n)
    if not grams:
        return None
    theirs = set(ngrams(tokens(partner), n))
    return sum(g in theirs for g in grams) / len(grams)


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


#: the per-role figures, each a mean over turns (module docstring)
ROLE_FIGURES = ("repeated_ngram_share", "copied_share", "self_repeat_rate", "words_per_turn")


def turn_values(dialogue: Dialogue, role: Role) -> dict[str, list[float | None]]:
    """Per figure of :data:`ROLE_FIGURES`, the value of each of ``role``'s turns in one dialogue
    that the figure reads (None: a turn without n-grams); a figure is their mean over turns."""
    repeated, copied, self_repeats, lengths = [], [], [], []
    own: list[tuple[str, ...]] = []
    for i, (speaker, text) in enumerate(dialogue):
        if speaker is not role:
            continue
        words = tuple(tokens(text or ""))
        lengths.append(float(len(words)))
        repeated.append(repeated_share(text or ""))
        if i > 0 and dialogue[i - 1][0] is not role:
            copied.append(copied_share(text or "", dialogue[i - 1][1] or ""))
        if own:
            self_repeats.append(float(bool(words) and words in own))
        own.append(words)
    return {"repeated_ngram_share": repeated, "copied_share": copied, "self_repeat_rate": self_repeats,
            "words_per_turn": lengths}


def role_figures(dialogues: Iterable[Dialogue], role: Role) -> dict:
    """The per-role figures (module docstring) of ``role``'s turns in ``dialogues``, with the
    number of turns they were read from."""
    values = [turn_values(d, role) for d in dialogues]
    return {"turns": sum(len(v["words_per_turn"]) for v in values),
            **{k: _mean(x for v in values for x in v[k]) for k in ROLE_FIGURES}}


def behaviour_figures(dialogues: Iterable[Dialogue]) -> dict:
    """Every figure of ``dialogues``: per role, and turns per episode."""
    dialogues = list(dialogues)
    return {"episodes": len(dialogues), "turns_per_episode": _mean(len(d) for d in dialogues),
            **{role.value: role_figures(dialogues, role) for role in Role}}


def episode_dialogue(ep) -> list[tuple[Role, str]]:
    """A logged episode's parsed turns as ``(role, text)``."""
    return [(t.role, t.text) for t in ep.turns if t.action is not None and t.text is not None]


def record_dialogue(record, turns: int | None = None) -> list[tuple[Role, str]]:
    """A data record's human turns as ``(role, text)`` (its first ``turns`` only, when given)."""
    return [(t.role, t.text) for t in record.turns[:turns]]


def behaviour_beside_people(episodes: Sequence, records: Sequence) -> dict:
    """The figures of ``episodes`` (EpisodeLog) and, on the records they drew from
    (``records`` matched by id), the same figures of the human dialogues (None without any)."""
    used = {e.record_id for e in episodes}
    human = [record_dialogue(r) for r in records if r.id in used]
    return {"simulated": behaviour_figures(episode_dialogue(e) for e in episodes),
            "human": behaviour_figures(human) if human else None}
