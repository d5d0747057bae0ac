"""Entity linking of dialogue text to the knowledge graph (the step the UniCRS release left out).

A turn links to: the items it marks as ``<movie_title>`` (exact title, then the catalogue's fuzzy
match); unmarked movie names of two or more words that name exactly one catalogue item (real users
rarely type years); genres (with plural and common aliases: "comedies", "scary movies", "sci fi");
tags and keywords of the graph, longest phrase first, skipping very common words.
"""

from __future__ import annotations

import re
from collections import Counter

from interplay.catalogue import Catalogue, normalize_title
from interplay.protocol import TITLE_CLOSE, TITLE_OPEN
from interplay.unicrs.kg import KnowledgeGraph

_TITLE_RE = re.compile(re.escape(TITLE_OPEN) + r"(.*?)" + re.escape(TITLE_CLOSE), re.S)
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9'\-]*")
GENRE_ALIASES = {
    "comedies": "comedy", "funny": "comedy", "dramas": "drama", "thrillers": "thriller", "horrors": "horror",
    "scary": "horror", "westerns": "western", "musicals": "musical", "mysteries": "mystery", "romances": "romance",
    "romantic": "romance", "rom-com": "romance", "romcom": "romance", "documentaries": "documentary",
    "animated": "animation", "cartoon": "animation", "cartoons": "animation", "sci fi": "sci-fi", "scifi": "sci-fi",
    "science fiction": "sci-fi", "kids": "children", "family": "children", "war movies": "war", "noir": "film-noir",
    "action movies": "action", "adventures": "adventure", "fantasies": "fantasy", "crime movies": "crime",
}
#: words too common in chat to stand for an attribute on their own
COMMON = frozenset("""a an and the of to in on it is i you he she we they me my your movie movies film films good great
bad like love one two see seen watch watched new old best really very more most some any all no not yes ok okay
thanks thank hi hello hey well also just that this what which who how about out up so too much many time
people man woman girl boy story end part life world day night home first last big little""".split())


class EntityLinker:
    """Links text to entity ids of ``kg`` (items through ``catalogue``)."""

    def __init__(self, kg: KnowledgeGraph, catalogue: Catalogue, max_ngram: int = 6):
        self.kg, self.catalogue, self.max_ngram = kg, catalogue, max_ngram
        self.phrases: dict[str, int] = {}
        for i, (name, kind) in enumerate(zip(kg.entities, kg.kinds)):
            if kind != "item" and name not in COMMON and len(name) >= 3:
                self.phrases[name] = i
        for alias, genre in GENRE_ALIASES.items():
            if genre in kg.index:
                self.phrases[alias] = kg.index[genre]
        # unmarked names: normalised name without year -> the one item that has it
        names: dict[str, list[str]] = {}
        for item in catalogue:
            key = normalize_title(re.sub(r"\s*\(\d{4}\)\s*$", "", item.title), keep_year=False)
            names.setdefault(key, []).append(item.item_id)
        self.names = {k: v[0] for k, v in names.items() if len(v) == 1 and len(k.split()) >= 2}

    def item_entity(self, title: str) -> int | None:
        """The entity of a marked title (exact, then fuzzy), or None."""
        item = self.catalogue.resolve(title)
        return self.kg.index.get(item.item_id) if item is not None else None

    def link(self, text: str, titles: list[str] | None = None) -> list[int]:
        """Entity ids mentioned in ``text`` in order of appearance (marked titles first), no repeats."""
        found: list[int] = []
        for title in list(titles or []) + [t.strip() for t in _TITLE_RE.findall(text)]:
            e = self.item_entity(title)
            if e is not None:
                found.append(e)
        plain = _TITLE_RE.sub(" ", text).lower()
        words = _WORD_RE.findall(plain)
        i = 0
        while i < len(words):
            for n in range(min(self.max_ngram, len(words) - i), 0, -1):
                gram = " ".join(words[i:i + n])
                e = self.phrases.get(gram)
                if e is None and n >= 2 and not all(w in COMMON for w in words[i:i + n]):
                    item_id = self.names.get(normalize_title(gram, keep_year=False))
                    e = self.kg.index.get(item_id) if item_id else None
                if e is not None:
                    found.append(e)
                    i += n - 1
                    break
            i += 1
        return list(dict.fromkeys(found))


def linking_coverage(linker: EntityLinker, records) -> dict:
    """How much of a record set links: turns with an entity, marked titles linked, mean entities per
    turn, and the share of linked entities by kind."""
    turns = with_entity = titles = titles_linked = n_entities = 0
    kinds: Counter = Counter()
    for rec in records:
        for t in rec.turns:
            turns += 1
            ents = linker.link(t.text, [])
            with_entity += bool(ents)
            n_entities += len(ents)
            kinds.update(linker.kg.kinds[e] for e in ents)
            for title in _TITLE_RE.findall(t.text):
                titles += 1
                titles_linked += linker.item_entity(title.strip()) is not None
    return {"turns": turns, "turns_with_entity": with_entity / turns if turns else 0.0,
            "marked_titles": titles, "marked_titles_linked": titles_linked / titles if titles else 0.0,
            "entities_per_turn": n_entities / turns if turns else 0.0,
            "linked_by_kind": {k: v / max(1, n_entities) for k, v in kinds.items()}}
