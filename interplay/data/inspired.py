"""INSPIRED loader (``dev.tsv``: one utterance per row).

Columns used: ``dialog_id``, ``utt_id``, ``speaker`` (RECOMMENDER / SEEKER), ``text``,
``text_with_placeholder`` (``[MOVIE_TITLE_i]``, ``[MOVIE_GENRE_i]``, ``[MOVIE_P_ACTOR_i]``, ...),
``movie_dict`` / ``genre_dict`` / ``actor_dict`` / ``director_dict`` (Python-literal dicts name ->
index), ``expert_label`` / ``second_label`` (the recommender's sociable strategies, kept as turn
metadata), ``fine_label`` / ``coarse_label`` (the outcome, repeated on every row). The final
recommended movie is the last title the recommender mentioned; ``accept_new`` makes it the
accepted item and the target, ``reject_new`` a rejected item (and the record has no target).
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.data.reactions import record_reactions
from interplay.data.raw_dialogue import RawTurn, build_record, merge_consecutive, place_decisions
from interplay.data.errors import DataFormatError
from interplay.data.schema import DialogueRecord
from interplay.protocol import Role, mark_title

REQUIRED = ("dialog_id", "utt_id", "speaker", "text", "text_with_placeholder", "movie_dict", "expert_label",
            "second_label", "fine_label", "coarse_label")
_PLACEHOLDER = re.compile(r"\[MOVIE_([A-Z_]+?)_(\d+)\]")
_DICTS = {"TITLE": "movie_dict", "GENRE": "genre_dict", "P_ACTOR": "actor_dict", "P_DIRECTOR": "director_dict"}


_PAIR = re.compile(r"""['"](.+?)['"]?\s*:\s*(\d+)\s*(?=[,}])""")


def _literal_dict(value: str, path: Path, line: int, field: str, repairs: list[str]) -> dict[int, str]:
    """``{'Name (Year)': 0, ...}`` -> ``{0: 'Name (Year)'}``; a literal with a broken quote (it
    happens in dev.tsv) is read pair by pair and noted in ``repairs``."""
    if not value.strip():
        return {}
    try:
        d = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pairs = _PAIR.findall(value)
        if not pairs:
            raise DataFormatError(path, line, field, f"not a dict literal: {value[:60]!r}") from None
        repairs.append(f"{field} at line {line}")
        return {int(i): name for name, i in pairs}
    if not isinstance(d, dict):
        raise DataFormatError(path, line, field, "not a dict")
    return {int(i): str(name) for name, i in d.items()}


def _dialogue(rows: list[tuple[int, dict]], path: Path, split: str, catalogue: Catalogue,
              annotator=None) -> DialogueRecord:
    line0, first = rows[0]
    repairs: list[str] = []
    maps = {kind: _literal_dict(first.get(col) or "", path, line0, col, repairs) for kind, col in _DICTS.items()}
    raw = []
    for line, row in rows:
        speaker = row["speaker"].strip().upper()
        if speaker not in ("RECOMMENDER", "SEEKER"):
            raise DataFormatError(path, line, "speaker", f"expected RECOMMENDER or SEEKER, got {speaker!r}")
        titles: list[str] = []

        def sub(m: re.Match) -> str:
            kind, idx = m.group(1), int(m.group(2))
            name = maps.get(kind, {}).get(idx)
            if name is None:
                return m.group(0)
            if not name.strip():  # an empty name in the source's dict
                return ""
            if kind == "TITLE":
                titles.append(name)
                return mark_title(name)
            return name

        text = _PLACEHOLDER.sub(sub, row["text_with_placeholder"] or row["text"]).strip()
        strategies = [s for s in (row["expert_label"].strip(), row["second_label"].strip()) if s]
        role = Role.USER if speaker == "SEEKER" else Role.RECOMMENDER
        raw.append(RawTurn(role, text, titles, meta={"strategies": strategies} if strategies else {}))
    turns = merge_consecutive(raw)
    rec_titles = [t for turn in turns if turn.role is Role.RECOMMENDER for t in turn.titles]
    final = rec_titles[-1] if rec_titles else None
    coarse = first["coarse_label"].strip()
    if coarse not in ("accept_new", "reject_new"):
        raise DataFormatError(path, line0, "coarse_label", f"expected accept_new or reject_new, got {coarse!r}")
    accepted = final if coarse == "accept_new" else None
    rejected = [final] if coarse == "reject_new" and final else []
    watched = [t for turn in turns if turn.role is Role.USER for t in turn.titles if t != final]
    record = build_record(
        record_id=f"inspired-{first['dialog_id'].removesuffix('.pkl')}", source="inspired", split=split,
        turns=turns, catalogue=catalogue, annotator=annotator, accepted_title=accepted, rejected_titles=rejected, watched_titles=watched,
        meta={"fine_label": first["fine_label"].strip(), "coarse_label": coarse, "final_recommendation": final,
              "trailer_id": first.get("movie_id", ""), **({"repaired": repairs} if repairs else {})},
    )
    # one outcome per dialogue: the seeker's answer to every other recommendation is judged from its
    # text ("none": no decision yet, kept as did-not-say); the outcome's verdict comes first
    reactions = record_reactions(record.whole_dialogue)
    judged = [(d.title, d.accept, None, "outcome") for d in record.decisions] + \
             [(x["item"], {"accept": 1, "reject": 0}.get(x["reaction"]), None, "reaction") for x in reactions]
    meta = {**record.meta, "reactions": reactions}
    decisions = place_decisions(judged, record.whole_dialogue, record.items,
                                record.target.item_id if record.target else None, meta)
    return record.model_copy(update={"meta": meta, "decisions": decisions})


def _check_row(row: dict, columns: list[str], path: Path, line: int) -> None:
    """A row with every column and only UTF-8 text, or a :class:`DataFormatError` naming the field."""
    short = [c for c in REQUIRED if row.get(c) is None]
    if short:
        have = sum(v is not None for k, v in row.items() if k is not None)
        raise DataFormatError(path, line, short[0], f"missing: the row has {have} of {len(columns)} columns")
    for key, value in row.items():
        if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
            raise DataFormatError(path, line, key or "<row>", "invalid UTF-8")


def load_inspired(path: str | Path, catalogue: Catalogue, split: str | None = None,
                  on_error=None, annotator=None) -> Iterator[DialogueRecord]:
    """Records of an INSPIRED TSV file (``split`` defaults to the file's stem, e.g. ``dev``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "dev.tsv"
    split = split or path.stem
    # bytes that are not UTF-8 are kept as surrogates, so that the row holding them is named and
    # skipped (--skip-invalid) instead of the whole file failing to decode
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(path, 1, missing[0], "column missing from the header")
        rows = [(i, row) for i, row in enumerate(reader, start=2)]
    if not rows:
        raise DataFormatError(path, None, "<file>", "empty: no row after the header")
    for dialog_id, group in groupby(rows, key=lambda r: r[1]["dialog_id"]):
        group = list(group)
        try:
            for line, row in group:
                _check_row(row, reader.fieldnames, path, line)
            group = sorted(group, key=lambda r: int(r[1]["utt_id"]) if r[1]["utt_id"].isdigit() else 0)
            yield _dialogue(group, path, split, catalogue, annotator)
        except (DataFormatError, ValueError) as exc:
            err = exc if isinstance(exc, DataFormatError) else DataFormatError(path, group[0][0], "<record>", str(exc))
            if on_error is None:
                raise err from None
            on_error(err)
