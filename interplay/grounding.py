"""Grounded observations: the user sees what a recommended film is, not only its title.

A person who is recommended "Inside Man (2006)" knows, or looks up, that it is a heist thriller;
a 135M model cannot know it from the title. With grounding on (the default run setting), every
recommender turn that names catalogue items reaches the user with those items' public facts
(:class:`~interplay.episode.ItemFacts`: title with year, genres, keywords). The recommender's
own observations never carry them: its view stays the paper's.

Leak guard: the facts never add the target's identity. An attribute of a named item that would
reveal the target's title or id (:func:`~interplay.episode.find_target_leak`, e.g. a sequel's
keyword naming its franchise) is dropped; item ids are never part of the facts. The title a
recommender named is already in the dialogue, so repeating it adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from interplay.catalogue import Catalogue, Item
from interplay.episode import HistoryTurn, ItemFacts, Target, find_target_leak
from interplay.protocol import Role

#: title -> catalogue item (None: the catalogue lacks it)
Resolver = Callable[[str], "Item | None"]

#: attributes shown per item: genres come first in the catalogue, then keywords by relevance
MAX_ATTRIBUTES = 12


def item_facts(title: str, catalogue: Catalogue, target: Target | None,
               max_attributes: int = MAX_ATTRIBUTES, resolve: Resolver | None = None) -> ItemFacts | None:
    """The facts of the catalogue item named ``title`` (None when no item matches), with every
    attribute that would reveal ``target`` removed. ``resolve``: title -> item, when the caller
    resolved the dialogue's titles already (default: ``catalogue.resolve``)."""
    item = (resolve or catalogue.resolve)(title)
    if item is None:
        return None
    attributes: list[str] = []
    for a in item.attributes:
        if a in attributes:
            continue
        # checked joined, as the user reads them: "harry", "potter" together name a franchise
        if target is not None and find_target_leak(", ".join([*attributes, a]), target) is not None:
            continue
        attributes.append(a)
        if len(attributes) == max_attributes:
            break
    return ItemFacts(title=item.title, attributes=attributes)


def turn_facts(turn: HistoryTurn, catalogue: Catalogue, target: Target | None,
               max_attributes: int = MAX_ATTRIBUTES, resolve: Resolver | None = None) -> list[ItemFacts]:
    """The facts of each catalogue item a recommender turn names, in order (user turns: none)."""
    if turn.role is not Role.RECOMMENDER:
        return []
    facts = [item_facts(t, catalogue, target, max_attributes, resolve) for t in turn.titles]
    seen: set[str] = set()
    return [f for f in facts if f is not None and not (f.title in seen or seen.add(f.title))]


def ground_history(history: list[HistoryTurn], catalogue: Catalogue, target: Target | None,
                   max_attributes: int = MAX_ATTRIBUTES, resolve: Resolver | None = None) -> list[HistoryTurn]:
    """``history`` with each recommender turn's ``about`` filled from the catalogue."""
    return [h.model_copy(update={"about": turn_facts(h, catalogue, target, max_attributes, resolve)})
            if h.role is Role.RECOMMENDER else h for h in history]


def strip_grounding(history: list[HistoryTurn]) -> list[HistoryTurn]:
    """``history`` without facts (what an ungrounded agent sees)."""
    return [h.model_copy(update={"about": []}) if h.about else h for h in history]


def matches(facts: ItemFacts, wanted: list[str]) -> int:
    """How many of the ``wanted`` attributes the item's facts show (case-insensitive)."""
    have = {a.lower() for a in facts.attributes}
    return sum(1 for a in dict.fromkeys(w.lower() for w in wanted) if a in have)


def facts_text(facts: list[ItemFacts], wanted: list[str] | None = None) -> str:
    """One line per item: ``About Inside Man (2006): crime, thriller, heist.``; with ``wanted``
    (the user's own target attributes, for a checkpoint trained with ``--grounding-match``) each
    line also says how many of them the item shows: ``... Matches 2 of your 6 wishes.`` It is a
    reading of two things the user already sees, not new information."""
    lines = []
    for f in facts:
        line = f"About {f.title}: {', '.join(f.attributes)}." if f.attributes else f"About {f.title}."
        if wanted:
            line += f" Matches {matches(f, wanted)} of your {len(dict.fromkeys(w.lower() for w in wanted))} wishes."
        lines.append(line)
    return "\n".join(lines)
