"""Blind pairs: both dialogues of a pair spell every title the way the catalogue does.

System episodes name titles as the catalogue spells them, while a data set's recorded human
dialogues keep their own spellings ("the matrix", "Matrix (1999)"): a cue that tells a judge which
side is human. Each logged turn carries the item id of every title it names (``item_ids``), so a
study stores, when it is created, the catalogue title of every item its pairs name
(:func:`catalogue_titles`), and the judge's page shows each marked title by its id in that
spelling (:func:`in_catalogue_spelling`). A title that names no catalogue item keeps the text's
spelling. Nothing else is rewritten: style, length, typos and unmarked titles stay as they were.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.episode_log import EpisodeLog
from interplay.protocol import TITLE_CLOSE, TITLE_OPEN, mark_title

_MARKED = re.compile(re.escape(TITLE_OPEN) + r"(.*?)" + re.escape(TITLE_CLOSE), re.S)


def load_catalogue(data: str | None) -> Catalogue | None:
    """The catalogue of ``data`` (``demo`` or a data folder of ``interplay data build``); None when
    there is none or it cannot be read."""
    if not data:
        return None
    from interplay.data.build import read_catalogue
    from interplay.simulation_data import DEMO, load_demo

    try:
        return load_demo().catalogue if data == DEMO else read_catalogue(data)
    except (OSError, ValueError):
        return None


def run_data(run: str | Path) -> str | None:
    """The data a run folder's agents ran on (``data`` in its ``config.json``), or None."""
    try:
        config = json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("data") if isinstance(config, dict) else None
    return value if isinstance(value, str) and value else None


def catalogue_titles(episodes: Iterable[EpisodeLog], catalogues: Iterable[Catalogue | None]) -> dict[str, str]:
    """``{item id: catalogue title}`` for every item the episodes' turns name that one of the
    catalogues holds (the first that holds it)."""
    found = [c for c in catalogues if c is not None]
    out: dict[str, str] = {}
    for ep in episodes:
        for turn in ep.turns:
            for item_id in turn.item_ids:
                if item_id is None or item_id in out:
                    continue
                item = next((it for c in found if (it := c.get(item_id)) is not None), None)
                if item is not None:
                    out[item_id] = item.title
    return out


def in_catalogue_spelling(episode: EpisodeLog, titles: dict[str, str]) -> EpisodeLog:
    """A copy of ``episode`` whose marked titles are spelt as ``titles`` spells their item ids;
    titles without an id in ``titles`` are left as written."""
    if not titles:
        return episode
    turns = []
    for turn in episode.turns:
        ids = {t: i for t, i in zip(turn.titles, turn.item_ids) if i is not None and i in titles}
        if not ids or not turn.text:
            turns.append(turn)
            continue

        def respell(m: re.Match, ids: dict[str, str] = ids) -> str:
            said = m.group(1).strip()
            return mark_title(titles[ids[said]]) if said in ids else m.group(0)

        turns.append(turn.model_copy(update={
            "text": _MARKED.sub(respell, turn.text),
            "titles": [titles[ids[t]] if t in ids else t for t in turn.titles]}))
    return episode.model_copy(update={"turns": turns})
