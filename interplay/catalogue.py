"""Items the agents can talk about: a small table of titles and attributes."""

from __future__ import annotations

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

    ``"Matrix, The (1999)"`` and ``"the matrix (1999)"`` give the same key.
    """
    name, year = split_year(title)
    m = _ARTICLE_RE.match(name)
    if m:
        name = f"{m.group(2)} {m.group(1)}"
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()
    return f"{name} {year}" if keep_year and year else name


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
        for item in items:
            if item.item_id in self._items:
                raise ValueError(f"duplicate item id {item.item_id!r}")
            self._items[item.item_id] = item
            self._by_title[normalize_title(item.title)] = item
            self._by_name.setdefault(normalize_title(item.title, keep_year=False), []).append(item)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    def __getitem__(self, item_id: str) -> Item:
        return self._items[item_id]

    def find(self, title: str) -> Item | None:
        """The item with this title (normalised; a title without a year matches a unique name)."""
        item = self._by_title.get(normalize_title(title))
        if item is not None:
            return item
        if split_year(title)[1] is None:
            named = self._by_name.get(normalize_title(title, keep_year=False), [])
            if len(named) == 1:
                return named[0]
        return None

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
            self._fuzzy = {}
            for it in self:
                self._fuzzy.setdefault(split_year(it.title)[1], []).append(it)
        pool = self._fuzzy.get(year, []) if year is not None else list(self)
        if not pool:
            return None
        names = [normalize_title(split_year(it.title)[0], keep_year=False) for it in pool]
        best = process.extractOne(key, names, scorer=fuzz.ratio, score_cutoff=min_score)
        return pool[best[2]] if best else None

    def vocabulary(self) -> set[str]:
        """Every attribute any item has, lower-cased."""
        return {a.lower() for item in self for a in item.attributes}
