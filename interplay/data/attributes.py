"""Personas and target attributes built from catalogue data, with no target leak.

Sources without review text (ReDial, INSPIRED, IARD) get persona and attribute texts built from the
catalogue's genres, tags and keywords; the record's ``provenance`` says so. Every attribute, watched
item and text is checked with :func:`~interplay.episode.find_target_leak` and dropped if it would
name the target.
"""

from __future__ import annotations

from collections import Counter

from interplay.catalogue import Catalogue, Item
from interplay.data.movielens import split_attributes
from interplay.episode import Persona, Target, WatchedItem, find_target_leak

MAX_ATTRIBUTES = 8
MAX_WATCHED = 3


def describe_item(item: Item, limit: int = 6) -> str:
    """Catalogue text of an item: ``"Genres: drama, war. Keywords: vietnam, marines."``"""
    genres, other = split_attributes(item)
    parts = []
    if genres:
        parts.append("Genres: " + ", ".join(genres[:3]) + ".")
    if other:
        parts.append("Keywords: " + ", ".join(other[:limit]) + ".")
    return " ".join(parts)


def target_from_item(item: Item) -> Target:
    """A target whose attributes (genres first, then keywords and tags) never name the item."""
    probe = Target(item_id=item.item_id, title=item.title)
    genres, other = split_attributes(item)
    attrs = [a for a in genres + other if find_target_leak(a, probe) is None][:MAX_ATTRIBUTES]
    g = [a for a in attrs if a in genres]
    k = [a for a in attrs if a not in genres]
    text = "A " + (", ".join(g) if g else "") + (" movie" if g else "movie")
    if k:
        text += " with " + ", ".join(k)
    return Target(item_id=item.item_id, title=item.title, attributes=attrs, attribute_text=text + ".")


def persona_from_items(watched: list[Item], target: Target | None) -> tuple[Persona, list[str]]:
    """A persona from items the user has seen and liked; returns it and the titles dropped as leaks."""
    kept, dropped = [], []
    for item in watched:
        if target is not None and (find_target_leak(item.title, target) or item.item_id == target.item_id):
            dropped.append(item.title)
            continue
        if item not in kept:
            kept.append(item)
        if len(kept) == MAX_WATCHED:
            break
    counts = Counter(a for it in kept for a in split_attributes(it)[0])
    keywords = Counter(a for it in kept for a in split_attributes(it)[1][:6])
    if target is not None:
        keywords = Counter({k: v for k, v in keywords.items() if find_target_leak(k, target) is None})
    if counts:
        summary = "Enjoys " + ", ".join(g for g, _ in counts.most_common(3)) + " movies"
        if keywords:
            summary += ", especially with " + ", ".join(k for k, _ in keywords.most_common(3))
        summary += "."
    else:
        summary = "No watched movies are recorded; preferences come up in the conversation."
    items = [WatchedItem(title=it.title, text=describe_item(it)) for it in kept]
    if target is not None:
        items = [w for w in items if find_target_leak(w.text, target) is None]
    return Persona(summary=summary, watched=items), dropped


def match_all(titles: list[str], catalogue: Catalogue) -> list[Item]:
    """The catalogue items of the titles that match, in order."""
    return [it for it in (catalogue.resolve(t) for t in titles) if it is not None]
