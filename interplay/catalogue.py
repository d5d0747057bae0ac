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
        self._fuzzy: dict[int | None, list[Item]] | None = None
        self._vocabulary: frozenset[str] | None = None
        self._key: str | None = None
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

    def match(self, title: str, min_score: float = 90.0) -> Item | None:
        """:meth:`find`, then fuzzy matching of the name (RapidFuzz ratio >= ``min_score``) among
        items of the same year (or all items when the title has no year)."""
        item = self.find(title)
        if item is not None:
            return item
        from rapidfuzz import fuzz, process

        name, year = split_year(title)
        key = normalize_title(name, keep_year=False)
        if len(key) < 4:
            return None
        if self._fuzzy is None:
            # built aside and published whole: agents of many episodes share one catalogue across
            # threads, and a half-built index made fuzzy matches differ between runs (measured)
            by_year: dict[int | None, list[Item]] = {}
            for it in self:
                by_year.setdefault(split_year(it.title)[1], []).append(it)
            self._fuzzy = by_year
        pool = self._fuzzy.get(year, []) if year is not None else list(self)
        if not pool:
            return None
        names = [normalize_title(split_year(it.title)[0], keep_year=False) for it in pool]
        # within one year a partial match ("star wars the force awakens" in "star wars episode vii
        # the force awakens") is safe enough; across all years only near-identical names are
        scorer = fuzz.WRatio if year is not None else fuzz.ratio
        best = process.extract(key, names, scorer=scorer, score_cutoff=min_score, limit=2)
        if not best or (len(best) == 2 and best[1][1] == best[0][1]):
            return None  # nothing close, or a tie between two items: ambiguous
        return pool[best[0][2]]

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
