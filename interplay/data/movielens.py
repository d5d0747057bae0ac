"""The item catalogue from MovieLens: titles, years, genres, user tags and plot keywords.

``movies.csv`` + ``tags.csv`` (+ ``links.csv`` for IMDb/TMDb ids) of ml-latest-small, joined by
``movieId`` with the keyword catalogue ``movies_w_keywords.csv`` (MovieLens-25M ids, which share
the id space). Item ids are ``ml:<movieId>``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from interplay.catalogue import Catalogue, Item
from interplay.data.errors import DataFormatError

ML_SMALL = "movielens-small"
ML_KEYWORDS = "movielens-keywords/movies_w_keywords.csv"
MAX_TAGS = 12


def _rows(path: Path, columns: tuple[str, ...]):
    """(line number, row dict) of a MovieLens CSV, with or without its header line.

    Files without a header must have the documented column order ``columns``."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        if first is None:
            return
        if first and first[0].strip().isdigit():
            names, pending = list(columns), [(1, first)]
        else:
            names, pending = [c.strip() for c in first], []
            missing = [c for c in columns if c not in names]
            if missing:
                raise DataFormatError(path, 1, missing[0], "column missing from the header")
        for lineno, cells in [*pending, *enumerate(reader, start=2)]:
            if len(cells) < len(columns):
                raise DataFormatError(path, lineno, columns[len(cells)] if cells else columns[0],
                                      f"expected {len(columns)} columns, got {len(cells)}")
            yield lineno, dict(zip(names, cells))


def _genres(text: str) -> list[str]:
    return [g.strip().lower() for g in text.split("|") if g.strip() and g != "(no genres listed)"]


def load_movielens_catalogue(data_root: str | Path) -> Catalogue:
    """All movies of ml-latest-small and the keyword catalogue, with their attributes."""
    root = Path(data_root)
    titles: dict[str, str] = {}
    attrs: dict[str, list[str]] = defaultdict(list)
    movies = root / ML_SMALL / "movies.csv"
    for lineno, row in _rows(movies, ("movieId", "title", "genres")):
        if not row["movieId"].strip().isdigit():
            raise DataFormatError(movies, lineno, "movieId", f"not an integer: {row['movieId']!r}")
        titles[row["movieId"]] = row["title"].strip()
        attrs[row["movieId"]].extend(_genres(row["genres"]))
    keywords = root / ML_KEYWORDS
    if keywords.exists():
        for lineno, row in _rows(keywords, ("movieId", "title", "genres", "keywords")):
            mid = row["movieId"].strip()
            titles.setdefault(mid, row["title"].strip())
            attrs[mid].extend(_genres(row["genres"]))
            attrs[mid].extend(k.strip().lower() for k in (row["keywords"] or "").split("|") if k.strip())
    tags = root / ML_SMALL / "tags.csv"
    if tags.exists():
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for _, row in _rows(tags, ("userId", "movieId", "tag", "timestamp")):
            counts[row["movieId"]][row["tag"].strip().lower()] += 1
        for mid, c in counts.items():
            attrs[mid].extend(sorted(c, key=lambda t: -c[t])[:MAX_TAGS])
    items = []
    for mid, title in titles.items():
        seen: dict[str, None] = {}
        for a in attrs[mid]:
            if a and len(a) <= 40:
                seen.setdefault(a)
        items.append(Item(item_id=f"ml:{mid}", title=title, attributes=tuple(seen)))
    return Catalogue(items)


GENRES = {
    "action", "adventure", "animation", "children", "comedy", "crime", "documentary", "drama", "fantasy",
    "film-noir", "horror", "imax", "musical", "mystery", "romance", "sci-fi", "thriller", "war", "western",
}


def split_attributes(item: Item) -> tuple[list[str], list[str]]:
    """(genres, other attributes) of a catalogue item."""
    genres = [a for a in item.attributes if a in GENRES]
    return genres, [a for a in item.attributes if a not in GENRES]
