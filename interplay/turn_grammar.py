"""The grammar of one legal turn, derived from :mod:`interplay.protocol`.

Constrained decoding generates only strings of this grammar: the canonical wire form

    <action><A></action><response>TEXT</response>

where ``A`` is one of the actions allowed for this turn (:func:`interplay.protocol.legal_actions`,
possibly narrowed by the caller), ``TEXT`` is free text in which ``<movie_title>`` can only be
followed by a title of the run's catalogue and ``</movie_title>``, and an action in
:data:`~interplay.protocol.TITLE_REQUIRED` names at least one title. Free text never contains
``<``: every ``<`` starts a protocol tag (so a text chunk ends unambiguously where a tag starts).
Every string of the grammar parses with :func:`~interplay.protocol.parse_turn` to an allowed
action whose titles are catalogue items; the tests check this property on random catalogues.

The grammar is written in llguidance's Lark dialect. Structural tags are rendered by a
``literal`` function: a quoted string for plain tokenizers (any tokenization of the tag's bytes
matches), or ``<[ID]>`` for tokenizers where the tag is one added special token (trained
checkpoints), whose bytes no text token can spell.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

from interplay.protocol import (
    ACTION_CLOSE,
    ACTION_OPEN,
    RESPONSE_CLOSE,
    RESPONSE_OPEN,
    ROLE_ACTIONS,
    TITLE_CLOSE,
    TITLE_OPEN,
    TITLE_REQUIRED,
    Action,
    Role,
)

#: A text chunk of a response: anything but ``<`` (which always starts a tag).
TEXT_REGEX = r"/[^<]+/"
#: Catalogues above this size spell their titles as one regex factored over shared prefixes
#: (a trie): the flat alternation of quoted titles did not compile within 280 s at 100k titles,
#: the factored regex compiled in 7 s (docs/structured_turns.md). Below it the flat form is kept
#: (measured at 1k and 14.6k titles).
FLAT_TITLES_MAX = 20_000
#: characters with a meaning in llguidance's (Rust) regex syntax, and the ``/`` closing the literal
_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~/")


class GrammarError(ValueError):
    """No legal turn satisfies the request (no allowed action, a title needed from an empty
    catalogue, an action the role may not take)."""


def quoted(text: str) -> str:
    """A Lark string literal for ``text`` (non-ASCII characters kept as they are: llguidance
    misreads JSON surrogate-pair escapes of characters beyond the BMP)."""
    return json.dumps(text, ensure_ascii=False)


def title_trie_regex(titles: Sequence[str]) -> str:
    """A Lark regex literal ``/.../`` matching exactly ``titles``, factored over their shared
    prefixes: each trie node becomes ``(?:a...|b...)``, optional where a title ends there."""
    root: dict = {}
    for t in titles:
        node = root
        for ch in t:
            node = node.setdefault(ch, {})
        node[None] = True

    def emit(node: dict) -> str:
        alts = ["\\" + ch + emit(child) if ch in _REGEX_META else ch + emit(child)
                for ch, child in sorted((k, v) for k, v in node.items() if k is not None)]
        if not alts:
            return ""
        if len(alts) == 1 and None not in node:
            return alts[0]
        return "(?:" + "|".join(alts) + ")" + ("?" if None in node else "")

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * max((len(t) for t in titles), default=0) + 1000))
    try:
        return "/" + emit(root) + "/"
    finally:
        sys.setrecursionlimit(limit)


def title_lexeme(titles: Sequence[str], shape: str = "auto") -> str:
    """The ``TITLE`` lexeme of a catalogue: ``flat`` (an alternation of quoted titles), ``trie``
    (:func:`title_trie_regex`), or ``auto`` (flat up to :data:`FLAT_TITLES_MAX` titles)."""
    if shape == "auto":
        shape = "flat" if len(titles) <= FLAT_TITLES_MAX else "trie"
    if shape == "flat":
        return " | ".join(quoted(t) for t in titles)
    if shape == "trie":
        return title_trie_regex(titles)
    raise ValueError(f"title shape {shape!r}: choose flat, trie or auto")


def check_actions(role: Role | None, actions: Iterable[Action], has_titles: bool) -> tuple[Action, ...]:
    """The actions as a sorted tuple, or :class:`GrammarError` when no legal turn could be
    generated: none given, one the role may not take, or only title-requiring actions with no
    catalogue titles to name."""
    acts = tuple(sorted(set(actions), key=lambda a: a.value))
    if not acts:
        raise GrammarError("no action is allowed for this turn")
    if role is not None:
        bad = [a.value for a in acts if a not in ROLE_ACTIONS[role]]
        if bad:
            raise GrammarError(f"the {role.value} may not take the action(s) {', '.join(bad)}; "
                               f"allowed: {', '.join(sorted(a.value for a in ROLE_ACTIONS[role]))}")
    if not has_titles and all(a in TITLE_REQUIRED for a in acts):
        raise GrammarError(f"a {'/'.join(a.value for a in acts)} turn must name a catalogue title, "
                           "and the catalogue is empty")
    return acts


def turn_grammar(actions: Iterable[Action], titles: Sequence[str] | None, role: Role | None = None,
                 literal: Callable[[str], str] = quoted, after_action_open: bool = False,
                 title_shape: str = "auto") -> str:
    """A Lark grammar (llguidance dialect) of the legal turns taking one of ``actions`` and
    naming only ``titles`` (``None``: no catalogue, any title text without ``<``); ``literal``
    renders a structural tag (see the module docstring).
    ``after_action_open``: the grammar of the rest of the turn when ``<action>`` is already
    written (a prompt prefilled with it, for engines that take a grammar and not a prefix).
    ``title_shape``: how the catalogue's titles are spelled (:func:`title_lexeme`)."""
    free_titles = titles is None
    titles = [t for t in dict.fromkeys(titles or []) if t]
    acts = check_actions(role, actions, free_titles or bool(titles))
    titled = [a for a in acts if a in TITLE_REQUIRED]
    free = [a for a in acts if a not in TITLE_REQUIRED]
    head = "" if after_action_open else literal(ACTION_OPEN)
    mid, tail = f"{literal(ACTION_CLOSE)} {literal(RESPONSE_OPEN)}", literal(RESPONSE_CLOSE)
    branches, rules = [], []
    if titled and (titles or free_titles):
        branches.append(f"{head} act_titled {mid} titled {tail}".strip())
        rules.append("act_titled: " + " | ".join(literal(a.token) for a in titled))
        rules.append("titled: TEXT? (title TEXT?)+")
    if free:
        branches.append(f"{head} act_free {mid} free {tail}".strip())
        rules.append("act_free: " + " | ".join(literal(a.token) for a in free))
        rules.append("free: TEXT? (title TEXT?)*" if titles or free_titles else "free: TEXT?")
    if titles or free_titles:
        rules.append(f"title: {literal(TITLE_OPEN)} TITLE {literal(TITLE_CLOSE)}")
        rules.append("TITLE: " + (TEXT_REGEX if free_titles else title_lexeme(titles, title_shape)))
    rules.append(f"TEXT: {TEXT_REGEX}")
    return "start: " + " | ".join(branches) + "\n" + "\n".join(rules) + "\n"


def token_literal(tokenizer) -> Callable[[str], str]:
    """The ``literal`` for ``tokenizer``: ``<[ID]>`` for a tag that is one added special token
    of it, a quoted string otherwise."""
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = tokenizer.get_added_vocab() if hasattr(tokenizer, "get_added_vocab") else {}

    def literal(tag: str) -> str:
        if tag in special and tag in added:
            return f"<[{added[tag]}]>"
        return quoted(tag)

    return literal


def conforms(raw: str, actions: Iterable[Action], titles: Iterable[str] | None, role: Role | None = None) -> bool:
    """Whether ``raw`` is a string of :func:`turn_grammar` for these actions and titles: the
    canonical wire form of a legal turn (a server that claims to apply the grammar is checked
    with it)."""
    from interplay.protocol import ProtocolError, format_turn, parse_turn

    try:
        turn = parse_turn(raw, role=role)
    except ProtocolError:
        return False
    if turn.action not in set(actions) or format_turn(turn) != raw:
        return False
    if titles is not None and any(t not in set(titles) for t in turn.titles):
        return False
    if turn.action in TITLE_REQUIRED and not turn.titles:
        return False
    stripped = turn.text
    for t in turn.titles:
        stripped = stripped.replace(f"{TITLE_OPEN}{t}{TITLE_CLOSE}", "", 1)
    return "<" not in stripped
