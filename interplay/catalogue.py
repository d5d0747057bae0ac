"""Items the agents can talk about: a small table of titles and attributes."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field

_YEAR_RE = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE_RE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|el|il|der|die|das)$", re.I)


def split_year(title: str) -> tuple[str, int | None]:
    """``"Heat (1995)"`` -> ``("Heat", 1995)``; a title without a year gives ``None``."""
    m = _YEAR_RE.search(title)
    if not m:
        return title.strip(), None
    return title[: m.start()].strip(), int(m.group(1))


def normalize_title(title: str, keep_year: bool = True) -> str:
    """A matching key for a title: case, accents, punctuation and a moved article removed.

    ``"Matrix, The (1999)"`` and ``"the matrix (1999)"`` give the same key, and so do
    ``"Ghostbusters (a.k.a. Ghost Busters) (1984)"`` and ``"Ghostbusters (1984)"``.
    """
    name, year = split_year(title)
    name = re.sub(r"\s*\([^)]*\)", "", name).strip() or name  # "(a.k.a. ...)", original-language titles
    m = _ARTICLE_RE.match(name)
    if m:
        name = f"{m.group(2)} {m.group(1)}"
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()
    return f"{name} {year}" if keep_year and year else name


def _alternative_titles(title: str) -> list[str]:
    """The title and its parenthesised alternatives: ``"A (a.k.a. B) (1999)"`` -> A, B (1999)."""
    name, year = split_year(title)
    suffix = f" ({year})" if year else ""
    alts = [title]
    for inner in re.findall(r"\(([^)]*)\)", name):
        inner = re.sub(r"^(a\.k\.a\.|aka)\s*", "", inner.strip(), flags=re.I)
        if inner:
            alts.append(inner + suffix)
    return alts


def _main_title(title: str) -> str:
    """The normalised name before a subtitle (``"Jumanji: Welcome to the Jungle (2017)"`` ->
    ``"jumanji"``); the whole name when there is no ``:`` or `` - ``."""
    name = re.split(r":\s| - ", split_year(title)[0], maxsplit=1)[0]
    return normalize_title(name, keep_year=False)


def _words_in_order(words: list[str], cand: list[str]) -> bool:
    """Whether ``words`` start ``cand`` word by word, or occur in order in it after its first word,
    which must be ``words[0]`` ("star wars the force awakens" in "star wars episode vii the force
    awakens"; never "justice" in "poetic justice")."""
    if not cand or cand[0] != words[0] or len(cand) <= len(words):
        return False
    it = iter(cand[1:])
    return all(w in it for w in words[1:])


class Item(BaseModel):
    """One catalogue item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str
    title: str
    attributes: tuple[str, ...] = Field(default_factory=tuple, description="genres, tags, keywords")


class Catalogue:
    """Items indexed by id and by normalised title."""

    def __init__(self, items: Iterable[Item]):
        self._items: dict[str, Item] = {}
        self._by_title: dict[str, Item] = {}
        self._by_name: dict[str, list[Item]] = {}
        #: year -> (item, its names normalised, each with its main title): built once, on first use
        self._fuzzy: dict[int | None, list[tuple[Item, tuple[tuple[str, str], ...]]]] | None = None
        self._vocabulary: frozenset[str] | None = None
        self._key: str | None = None
        self._resolved: dict[str, Item | None] = {}
        for item in items:
            if item.item_id in self._items:
                raise ValueError(f"duplicate item id {item.item_id!r}")
            self._items[item.item_id] = item
            for key in _alternative_titles(item.title):
                self._by_title.setdefault(normalize_title(key), item)
                named = self._by_name.setdefault(normalize_title(key, keep_year=False), [])
                if not named or named[-1] is not item:  # an item's alternative titles come together
                    named.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    def __getitem__(self, item_id: str) -> Item:
        return self._items[item_id]

    def get(self, item_id: str | None) -> Item | None:
        """The item with this id, or None."""
        return self._items.get(item_id) if item_id is not None else None

    def find(self, title: str) -> Item | None:
        """The item with this title, normalised (alternative "a.k.a." titles count). A title
        without a year, or whose year is off by one, matches a name that only one item has."""
        item = self._by_title.get(normalize_title(title))
        if item is not None:
            return item
        name, year = split_year(title)
        named = self._by_name.get(normalize_title(name, keep_year=False), [])
        if year is not None:
            named = [it for it in named if (y := split_year(it.title)[1]) is not None and abs(y - year) <= 1]
        return named[0] if len(named) == 1 else None

    def resolve(self, title: str) -> Item | None:
        """The one lookup of a title in running text: :meth:`find`, then a guarded fuzzy match.

        Every comparison of items in the project goes through the ids this returns (resolved once,
        when a record is built or a turn is logged). The fuzzy step accepts, among items of the
        title's year (off by one allowed), only

        - a near-identical name (RapidFuzz ``ratio`` >= 90: typos, "&" vs "and"), or
        - the item's main title, before a ``:`` or `` - `` subtitle ("Jumanji" -> "Jumanji: Welcome
          to the Jungle"), or
        - a name of at least two words that is the *start* of the item's name, word by word, or
          whose words all occur in order after the item's first word ("Avengers Infinity War" ->
          "Avengers: Infinity War - Part I", "Star Wars The Force Awakens" -> "Star Wars:
          Episode VII - The Force Awakens"),

        and refuses ties. A name that only appears inside a longer one ("Justice" in "Poetic
        Justice", "Game" in "Spy Kids 3-D: Game Over") is no match. Without a year only
        near-identical names (``ratio`` >= 95) count. Results are cached per title."""
        if title in self._resolved:
            return self._resolved[title]
        item = self.find(title)
        if item is None:
            item = self._fuzzy_match(title)
        self._resolved[title] = item
        return item

    def _fuzzy_match(self, title: str) -> Item | None:
        from rapidfuzz import fuzz

        name, year = split_year(title)
        key = normalize_title(name, keep_year=False)
        if len(key) < 4:
            return None
        if self._fuzzy is None:
            # built aside and published whole: agents of many episodes share one catalogue across
            # threads, and a half-built index made fuzzy matches differ between runs (measured)
            by_year: dict[int | None, list[tuple[Item, tuple[tuple[str, str], ...]]]] = {}
            for it in self:
                names = tuple((normalize_title(split_year(alt)[0], keep_year=False), _main_title(alt))
                              for alt in _alternative_titles(it.title))
                by_year.setdefault(split_year(it.title)[1], []).append((it, names))
            self._fuzzy = by_year
        if year is None:
            pool, cutoff = [e for entries in self._fuzzy.values() for e in entries], 95.0
        else:
            pool, cutoff = [e for y in (year, year - 1, year + 1) for e in self._fuzzy.get(y, [])], 90.0
        words = key.split()
        hits: dict[str, tuple[float, Item]] = {}
        for it, names in pool:
            for cand, main in names:
                score = fuzz.ratio(key, cand)
                if score < cutoff and year is not None and (
                        key == main or (len(words) >= 2 and _words_in_order(words, cand.split()))):
                    score = 89.0  # a shortened name: below any near-identical one
                if score >= 89.0 and (it.item_id not in hits or hits[it.item_id][0] < score):
                    hits[it.item_id] = (score, it)
        if not hits:
            return None
        ranked = sorted(hits.values(), key=lambda h: -h[0])
        exact_year = [h for h in ranked if split_year(h[1].title)[1] == year]
        if year is not None and exact_year and exact_year[0][0] >= ranked[0][0]:
            ranked = exact_year
        if len(ranked) > 1 and ranked[1][0] == ranked[0][0]:
            return None  # a tie between two items: ambiguous
        return ranked[0][1]

    def titles(self) -> list[str]:
        """Every item's title, in catalogue order."""
        return [item.title for item in self._items.values()]

    @property
    def key(self) -> str:
        """A content hash naming this catalogue's titles (equal in every process): constrained
        decoding registers the titles with a model server under it once."""
        if self._key is None:
            h = hashlib.sha1()
            for title in self.titles():
                h.update(title.encode("utf-8") + b"\x00")
            self._key = f"cat-{len(self)}-{h.hexdigest()[:12]}"
        return self._key

    def vocabulary(self) -> frozenset[str]:
        """Every attribute any item has, lower-cased (computed once)."""
        if self._vocabulary is None:
            self._vocabulary = frozenset(a.lower() for item in self for a in item.attributes)
        return self._vocabulary
