"""Seeker reactions to recommendations: every recommendation in a dialogue judged from the
seeker's next turn as ``accept``, ``reject`` or ``none`` (no decision).

INSPIRED records one outcome per dialogue (the final recommendation), so its human view held one
judged item per dialogue, and every rejection came from a dialogue without a target. The seeker's
answer to each earlier recommendation says more: "I'll check it out" (accept), "not my genre,
another one?" (reject), "what's it about?" (no decision yet). The rules, in order:

1. a refusal (:data:`REFUSAL`: "not my thing", "nah", "I don't like ...", "another
   recommendation", ...) -> ``reject``;
2. an explicit commitment (:data:`COMMITMENT`: "I accept", "I'll check it out", "I'd like to see
   it", "I will watch ...") -> ``accept``;
3. approval without a question ("sounds great!", "thank you, sounds good") -> ``accept``;
   approval with a question ("sounds interesting, what's it about?") -> ``none``;
4. otherwise ``none``.

Measured against 125 hand-labelled INSPIRED reactions (``tests/fixtures/inspired_reactions_gold.tsv``);
the figures are in docs/fidelity.md.
"""

from __future__ import annotations

import re

from interplay.data.schema import RecordTurn
from interplay.protocol import Action, Role

REFUSAL = re.compile(
    r"\b(nah|not (really )?(my|for me|something that interests|interested)|not my (thing|genre|type|style|cup)|"
    r"(don'?t|do not|didn'?t|did not) (really )?(like|want|enjoy|care for|dig)|no,? thanks|"
    r"(won'?t|will not|wouldn'?t|would not) (be )?(watch|like|enjoy|want|see)|(give|have|got) (me )?another|"
    r"another (recommendation|suggestion|one|movie)|something else|usually not|(terribly|too|really|so) "
    r"(boring|unfunny|slow|long|scary)|tends to drag|not interested|pass on)\b",
    re.I,
)
COMMITMENT = re.compile(
    r"\b(i (will |do )?accept|accept (your|this|that|the)|(i|we)\s*('?ll|will|would|'?d|am going to|'?m going to|gonna|"
    r"may|might|think i will|definitely will|have to|need to|should|want to|wanna)\s+(definitely |probably |have to |"
    r"def |just |really |surely |also |totally |be sure to |need to )*(watch|check|see|try|look|give|add|take a look|"
    r"rent|stream|be interested in watching|like to (see|watch))|(like|love|want|wanting|need) to (see|watch)( it| that)?|"
    r"check (it|that|them) out|take a look|of course|sounds? like a plan|i'?m in|will do|i('ll| will) (try|see)|"
    r"definitely will|(might|may) be worth (checking|watching)|give (it|that) a (go|try|shot|watch|look)|"
    r"(watch|see) (it|the movie|this movie|that movie) after|on my (watch ?)?list|i wouldd? watch)\b",
    re.I,
)
APPROVAL = re.compile(
    r"\b(sounds? (really |pretty |very )?(good|great|awesome|interesting|fun|cool|amazing|perfect|nice)|"
    r"(great|good|nice) (suggestion|idea|choice|pick|one)|that'?s a good (one|idea)|thank(s| you).{0,20}"
    r"(suggestion|recommendation)|doesn'?t sound bad|also nice movie|sounds great)\b",
    re.I,
)


def reaction_of(text: str) -> str:
    """``accept``, ``reject`` or ``none``: the seeker's reaction to a recommendation, by the rules above."""
    if REFUSAL.search(text):
        return "reject"
    if COMMITMENT.search(text):
        return "accept"
    if APPROVAL.search(text) and "?" not in text:
        return "accept"
    return "none"


def record_reactions(turns: list[RecordTurn]) -> list[dict]:
    """Each recommender turn that recommends titles and is answered by the user: the turn's index,
    the item (its first title the user had not named before) and the reaction to it. ``turns``:
    a whole dialogue (``DialogueRecord.whole_dialogue``)."""
    out, user_named = [], set()
    for k, turn in enumerate(turns):
        if turn.role is Role.USER:
            user_named.update(t.lower() for t in turn.titles)
            continue
        if turn.action is not Action.RECOMMEND or k + 1 >= len(turns) or turns[k + 1].role is not Role.USER:
            continue
        new = [t for t in turn.titles if t.lower() not in user_named]
        if new:
            out.append({"turn": k, "item": new[0], "reaction": reaction_of(turns[k + 1].text)})
    return out
