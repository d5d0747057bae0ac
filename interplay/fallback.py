"""Reading free-form model answers: the protocol first, then a documented fallback.

Zero-shot models often answer in prose. :func:`parse_with_fallback` strips reasoning blocks
(``<think>...</think>``), tries the protocol parser, and when that fails maps the text to an
action by these rules, in order (the rule used is recorded in ``turn.meta["fallback"]``):

1. ``action-tag``: an action token of the role (e.g. ``<recommend>``) appears anywhere;
2. user ``accept-phrase``: an acceptance phrase ("I'll watch it", "sounds great", ...) right
   after a recommendation;
3. recommender ``catalogue-title``: a catalogue title appears in the text (marked ``<movie_title>``
   already, a "Title (Year)" span, or a quoted / starred span found in the catalogue) -> recommend;
4. ``question``: the text asks something (a question mark) -> inquire;
5. ``default``: the user discloses its goal (or gives feedback after a recommendation); the
   recommender greets on the first turn, else gives feedback.

Protocol-clean turns carry ``meta["fallback"] = None``. A text empty after cleaning stays an error.
"""

from __future__ import annotations

import re

from interplay.catalogue import Catalogue
from interplay.protocol import (
    ROLE_ACTIONS,
    TITLE_CLOSE,
    TITLE_OPEN,
    Action,
    ProtocolError,
    Role,
    Turn,
    check_turn,
    mark_title,
    parse_turn,
)

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_TAG = re.compile(r"</?(action|response|think|[a-z]+(-[a-z]+)*)>", re.I)
_ACCEPT = re.compile(
    r"\b(i('ll| will| would love to| am going to|'m going to) (watch|see|check|give|take|go with)|"
    r"sounds (good|great|perfect|amazing|interesting|like a (great|good|perfect))|that'?s (it|the one|perfect)|"
    r"perfect\b|love (it|that)|great (choice|pick|suggestion|idea)|i'?ll take it|thank(s| you)[,!.]? (i|that))",
    re.I)
_YEAR_SPAN = re.compile(r"([A-Z0-9][\w'’:&,.!\- ]{0,80}?\(\d{4}\))")
_QUOTED = re.compile(r"[\"“*]{1,2}([^\"”*\n]{2,80})[\"”*]{1,2}")


def strip_reasoning(raw: str) -> str:
    """Remove ``<think>...</think>`` blocks; an unclosed ``<think>`` drops everything after it."""
    text = _THINK.sub("", raw)
    i = text.lower().find("<think>")
    return text[:i] if i >= 0 else text


def _response_text(text: str) -> str:
    m = re.search(r"<response>(.*?)(</response>|$)", text, re.S | re.I)
    body = m.group(1) if m else text
    keep = body.replace(TITLE_OPEN, "\x00").replace(TITLE_CLOSE, "\x01")
    keep = _TAG.sub(" ", keep).replace("\x00", TITLE_OPEN).replace("\x01", TITLE_CLOSE)
    return " ".join(keep.split())


def find_titles(text: str, catalogue: Catalogue | None) -> list[tuple[str, str]]:
    """(span as written, catalogue title) of items named in ``text``, in order of appearance."""
    if catalogue is None:
        return []
    found: list[tuple[int, str, str]] = []
    for rx in (_YEAR_SPAN, _QUOTED):
        for m in rx.finditer(text):
            span, item = _longest_title_suffix(m.group(1).strip(" ,."), catalogue)
            if item is not None and not any(span in f[1] or f[1] in span for f in found):
                found.append((m.start(1) + m.group(1).find(span), span, item.title))
    return [(s, t) for _, s, t in sorted(found)]


def _longest_title_suffix(span: str, catalogue: Catalogue):
    """The longest run of final words of ``span`` naming a catalogue item ("You should watch The
    Matrix (1999)" -> "The Matrix (1999)"): exact lookups first, then a fuzzy match."""
    words = span.split()
    tails = [" ".join(words[i:]) for i in range(max(0, len(words) - 10), len(words))]
    for lookup in (catalogue.find, catalogue.resolve):
        for tail in tails:
            if len(tail) > 3:
                item = lookup(tail)
                if item is not None:
                    return tail, item
    return span, None


def parse_with_fallback(raw: str, role: Role, catalogue: Catalogue | None = None,
                        after_recommendation: bool = False, first_turn: bool = False) -> Turn:
    """A :class:`Turn` from a model output, by the protocol or by the fallback rules above."""
    cleaned = strip_reasoning(raw).strip()
    try:
        turn = parse_turn(cleaned, role=role)
        return Turn(turn.action, turn.text, raw=raw, meta={"fallback": None})
    except ProtocolError as err:
        original = err
    text = _response_text(cleaned)
    if TITLE_OPEN in text or TITLE_CLOSE in text:
        try:
            check_turn(Turn(Action.FEEDBACK, text), Role.RECOMMENDER)
        except ProtocolError:
            text = text.replace(TITLE_OPEN, "").replace(TITLE_CLOSE, "")
    if not text:
        raise original
    allowed = ROLE_ACTIONS[role]
    tags = [Action(m.group(1).lower()) for m in re.finditer(r"<([a-z]+(?:-[a-z]+)*)>", cleaned, re.I)
            if m.group(1).lower() in {a.value for a in Action}]
    action, rule = None, None
    marked = Turn(Action.FEEDBACK, text).titles
    if tags and tags[0] in allowed and (tags[0] is not Action.RECOMMEND or marked or find_titles(text, catalogue)):
        action, rule = tags[0], "action-tag"
    elif role is Role.USER and after_recommendation and _ACCEPT.search(text):
        action, rule = Action.ACCEPT, "accept-phrase"
    elif role is Role.RECOMMENDER and (marked or find_titles(text, catalogue)):
        action, rule = Action.RECOMMEND, "catalogue-title"
    elif "?" in text:
        action, rule = Action.INQUIRE, "question"
    elif role is Role.USER:
        action, rule = (Action.FEEDBACK if after_recommendation else Action.DISCLOSE_GOAL), "default"
    else:
        action, rule = (Action.GREETING if first_turn else Action.FEEDBACK), "default"
    if action is Action.RECOMMEND and not marked:
        for span, _title in find_titles(text, catalogue):
            text = text.replace(span, mark_title(span), 1)
    return Turn(action, text, raw=raw, meta={"fallback": rule})
