"""PEARL loader (Hugging Face ``DLI-Lab/pearl`` or a local JSON / JSONL / parquet export).

Fields read from each record (names configurable through ``field_map``):

| key | default field | type | use |
| --- | --- | --- | --- |
| dialogue | ``dialogue`` | list of str, each ``"Seeker: ..."`` or ``"Recommender: ..."`` | turns |
| persona | ``user_persona`` | str | persona summary (provenance ``review``) |
| watched_titles | ``seen_movie_titles`` | list of str | persona watched items |
| watched_reviews | ``seen_movie_reviews`` | list of str (same length) | their review texts |
| target_title | ``target_movie_title`` | str | the item the seeker accepts |
| target_abstract | ``target_movie_abstract`` | str | attribute text (sentences naming the title dropped) |
| target_genres | ``target_movie_genres`` | list of str or ``"a, b"`` | attributes |
| target_director | ``target_movie_director`` | str | attributes |
| target_cast | ``target_movie_cast`` | list of str or ``"a, b"`` | attributes |
| split | ``split`` | str, optional | split (else the file's split or ``train``) |

Filtering, as in the paper: empty turns are dropped; a conversation whose target or watched movies
are not in the catalogue is dropped; a malformed record is an error (or skipped with a reason
under ``skip_invalid``). :class:`PearlReport` counts what was dropped and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.data.builder import RawTurn, build_record, mark_titles, merge_consecutive
from interplay.data.errors import DataFormatError
from interplay.data.schema import DialogueRecord
from interplay.episode import Persona, Target, WatchedItem, find_target_leak
from interplay.protocol import Role

HUB_ID = "DLI-Lab/pearl"
DEFAULT_FIELDS = {
    "dialogue": "dialogue", "persona": "user_persona", "watched_titles": "seen_movie_titles",
    "watched_reviews": "seen_movie_reviews", "target_title": "target_movie_title",
    "target_abstract": "target_movie_abstract", "target_genres": "target_movie_genres",
    "target_director": "target_movie_director", "target_cast": "target_movie_cast", "split": "split",
}
REQUIRED = ("dialogue", "persona", "target_title")
_SPEAKER = re.compile(r"^\s*(seeker|recommender)\s*:\s*", re.I)


@dataclass
class PearlReport:
    """What the loader kept and dropped, and why."""

    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    empty_turns_removed: int = 0

    @property
    def dropped_fraction(self) -> float:
        return sum(self.dropped.values()) / self.read if self.read else 0.0


def _list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def parse_record(obj: dict, where: tuple[Path, int], split: str, catalogue: Catalogue, fields: dict,
                 report: PearlReport, annotator=None) -> DialogueRecord | None:
    """One PEARL record, or ``None`` when the paper's filter drops it (counted in ``report``)."""
    path, line = where
    for key in REQUIRED:
        if fields[key] not in obj:
            raise DataFormatError(path, line, fields[key], "missing")
    dialogue = obj[fields["dialogue"]]
    if not isinstance(dialogue, list):
        raise DataFormatError(path, line, fields["dialogue"], "expected a list of 'Seeker: ...' strings")
    target_item = catalogue.match(str(obj[fields["target_title"]]))
    if target_item is None:
        report.dropped["target not in catalogue"] += 1
        return None
    watched_titles = _list(obj.get(fields["watched_titles"]))
    reviews = _list(obj.get(fields["watched_reviews"])) if not isinstance(obj.get(fields["watched_reviews"]), str) \
        else [obj[fields["watched_reviews"]]]
    watched_items = [catalogue.match(t) for t in watched_titles]
    if any(it is None for it in watched_items):
        report.dropped["watched movie not in catalogue"] += 1
        return None
    target = Target(item_id=target_item.item_id, title=target_item.title)
    abstract = str(obj.get(fields["target_abstract"]) or "")
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", abstract) if s and find_target_leak(s, target) is None]
    attrs = _list(obj.get(fields["target_genres"])) + _list(obj.get(fields["target_director"])) + \
        _list(obj.get(fields["target_cast"]))
    attrs = [a.lower() for a in attrs if find_target_leak(a, target) is None]
    target = target.model_copy(update={"attributes": attrs, "attribute_text": " ".join(sentences)})
    watched = [WatchedItem(title=it.title, text=(reviews[i] if i < len(reviews) else ""))
               for i, it in enumerate(watched_items) if find_target_leak(it.title, target) is None][:3]
    watched = [w if find_target_leak(w.text, target) is None else w.model_copy(update={"text": ""}) for w in watched]
    raw = []
    known = [str(obj[fields["target_title"]]), *watched_titles]
    for i, utt in enumerate(dialogue):
        if not isinstance(utt, str):
            raise DataFormatError(path, line, f"{fields['dialogue']}[{i}]", "not a string")
        m = _SPEAKER.match(utt)
        if not m:
            raise DataFormatError(path, line, f"{fields['dialogue']}[{i}]", "must start with 'Seeker:' or 'Recommender:'")
        text = utt[m.end():].strip()
        if not text:
            report.empty_turns_removed += 1
            continue
        text, titles = mark_titles(text, known, catalogue)
        titles = [target_item.title if catalogue.match(t) == target_item else t for t in titles]
        raw.append(RawTurn(Role.USER if m.group(1).lower() == "seeker" else Role.RECOMMENDER, text, titles))
    turns = merge_consecutive(raw)
    persona_text = str(obj[fields["persona"]]).strip()
    if not persona_text:
        raise DataFormatError(path, line, fields["persona"], "empty")
    record_split = str(obj.get(fields["split"]) or split)
    rec_titles = {t for tr in turns if tr.role is Role.RECOMMENDER for t in tr.titles}
    accepted = target_item.title if target_item.title in rec_titles else None
    if accepted is None:
        report.dropped["target never recommended"] += 1
        return None
    record = build_record(
        record_id=f"pearl-{obj.get('id', f'{path.stem}-{line}')}", source="pearl", split=record_split, turns=turns,
        catalogue=catalogue, annotator=annotator, accepted_title=accepted, rejected_titles=[], watched_titles=[],
        persona=Persona(summary=persona_text, watched=watched), target=target,
        provenance={"persona": "review", "target_attributes": "source"},
    )
    report.kept += 1
    return record


def _rows(path: Path) -> Iterator[tuple[Path, int, dict, str]]:
    split = next((s for s in ("train", "valid", "validation", "test") if s in path.stem), "train")
    split = "valid" if split == "validation" else split
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield path, lineno, json.loads(line), split
                    except json.JSONDecodeError as exc:
                        raise DataFormatError(path, lineno, "<json>", exc.msg) from None
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, exc.lineno, "<json>", exc.msg) from None
        for i, obj in enumerate(data if isinstance(data, list) else data.get("data", [])):
            yield path, i + 1, obj, split  # the record's index (1-based) stands for its line
    elif path.suffix == ".parquet":
        from datasets import Dataset

        for i, obj in enumerate(Dataset.from_parquet(str(path))):
            yield path, i + 1, obj, split
    else:
        raise DataFormatError(path, None, "<file>", "expected .json, .jsonl or .parquet")


def load_pearl(path: str | Path, catalogue: Catalogue, field_map: dict | None = None, on_error=None,
               report: PearlReport | None = None, annotator=None) -> Iterator[DialogueRecord]:
    """PEARL records from a local file or folder of files, or from the hub (``path == "hub"``)."""
    fields = {**DEFAULT_FIELDS, **(field_map or {})}
    report = report if report is not None else PearlReport()
    if str(path) == "hub":
        from datasets import load_dataset

        ds = load_dataset(HUB_ID)
        rows = ((Path(HUB_ID), i + 1, obj, "valid" if name == "validation" else name)
                for name, part in ds.items() for i, obj in enumerate(part))
    else:
        p = Path(path)
        files = sorted(f for f in p.iterdir() if f.suffix in (".json", ".jsonl", ".parquet")) if p.is_dir() else [p]
        rows = (row for f in files for row in _rows(f))
    for file, line, obj, split in rows:
        report.read += 1
        try:
            if not isinstance(obj, dict):
                raise DataFormatError(file, line, "<record>", "not an object")
            record = parse_record(obj, (file, line), split, catalogue, fields, report, annotator)
        except (DataFormatError, ValueError) as exc:
            err = exc if isinstance(exc, DataFormatError) else DataFormatError(file, line, "<record>", str(exc))
            report.dropped["invalid"] += 1
            if on_error is None:
                raise err from None
            on_error(err)
            continue
        if record is not None:
            yield record
