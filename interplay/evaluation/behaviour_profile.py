"""Behaviour profile of a user simulator vs people on the same records: user actions by turn
position, user turns per dialogue, words per user turn, each compared by Jensen-Shannon
divergence; and the share of non-committal answers ("I'm open to anything") on both sides.

Non-committal is a documented rule (:data:`NONCOMMITTAL`): a user turn containing one of these
phrases, case and punctuation ignored. Real users hedge; a simulator that never does is less
like them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from interplay.metrics.core import words
from interplay.metrics.fidelity import js_divergence

NONCOMMITTAL = ("open to anything", "anything is fine", "anything really", "whatever", "i dont mind", "dont care",
                "doesnt matter", "no preference", "not sure", "up to you", "surprise me", "im easy", "either is fine",
                "any genre", "anything works", "i guess")
_PHRASES = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in NONCOMMITTAL) + r")\b")
POSITION_CAP = 5  # user turns from the 5th on share one position bin
WORD_BINS = ((0, 2), (3, 5), (6, 10), (11, 20), (21, 40), (41, None))


def noncommittal(text: str | None) -> bool:
    """The turn hedges or leaves the choice open (one of :data:`NONCOMMITTAL`)."""
    norm = " ".join(re.sub(r"[^\w\s]", "", (text or "").lower()).split())
    return _PHRASES.search(norm) is not None


def _word_bin(n: int) -> str:
    for lo, hi in WORD_BINS:
        if hi is None or n <= hi:
            return f"{lo}+" if hi is None else f"{lo}-{hi}"
    raise AssertionError(n)


def profile(dialogues: Iterable[list[tuple[str | None, str | None]]]) -> dict:
    """Counts of one side: each dialogue is its user turns as (action, text)."""
    by_position: Counter = Counter()
    per_dialogue: Counter = Counter()
    word_bins: Counter = Counter()
    hedges = turns = 0
    for user_turns in dialogues:
        per_dialogue[str(len(user_turns))] += 1
        for i, (action, text) in enumerate(user_turns):
            by_position[f"{min(i + 1, POSITION_CAP)}:{action}"] += 1
            word_bins[_word_bin(words(text or ""))] += 1
            hedges += noncommittal(text)
            turns += 1
    return {"actions_by_position": dict(by_position), "turns_per_dialogue": dict(per_dialogue),
            "words_per_turn": dict(word_bins), "user_turns": turns, "dialogues": sum(per_dialogue.values()),
            "noncommittal_share": hedges / turns if turns else None}


def compare_profiles(simulated: dict, human: dict) -> dict:
    """JS divergence of each distribution, and both sides' non-committal shares."""
    return {
        "js_actions_by_position": js_divergence(simulated["actions_by_position"], human["actions_by_position"]),
        "js_turns_per_dialogue": js_divergence(simulated["turns_per_dialogue"], human["turns_per_dialogue"]),
        "js_words_per_turn": js_divergence(simulated["words_per_turn"], human["words_per_turn"]),
        "noncommittal_simulated": simulated["noncommittal_share"], "noncommittal_human": human["noncommittal_share"],
        "simulated": simulated, "human": human,
    }


def behaviour_profile(episodes, records) -> dict:
    """Simulated user turns of replay ``episodes`` (EpisodeLog) vs the human user turns of the
    ``records`` (DialogueRecord) they replay, on the records both sides have; the human side up
    to the answer to the last recommender turn, where a replay stops. ``figures``: the behaviour
    figures (:mod:`interplay.metrics.behaviour`) of both sides' whole dialogues over the same part."""
    from interplay.metrics.behaviour import (
        behaviour_figures,
        episode_dialogue,
        record_dialogue,
    )
    from interplay.protocol import Role

    replayed = {e.record_id for e in episodes}
    sim = profile([[(t.action.value if t.action else None, t.text) for t in e.turns if t.role is Role.USER]
                   for e in episodes])

    def replayed_part(r):
        last = max((i for i, t in enumerate(r.turns) if t.role is Role.RECOMMENDER), default=-1)
        return [(t.action.value, t.text) for t in r.turns[: last + 2] if t.role is Role.USER]

    hum = profile([replayed_part(r) for r in records if r.id in replayed])

    def replayed_turns(r) -> int:
        return max((i for i, t in enumerate(r.turns) if t.role is Role.RECOMMENDER), default=-1) + 2

    figures = {"simulated": behaviour_figures(episode_dialogue(e) for e in episodes),
               "human": behaviour_figures(record_dialogue(r, replayed_turns(r)) for r in records if r.id in replayed)}
    return {**compare_profiles(sim, hum), "figures": figures}
