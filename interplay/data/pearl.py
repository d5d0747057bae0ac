"""PEARL loader (Hugging Face ``DLI-Lab/pearl`` or a local JSON / JSONL / parquet export).

Fields read from each record, by default under PEARL's own names (the hub files and the generator
``kkmjkim/PEARL``, see ``docs/data.md``); ``field_map`` (``--field-map KEY=FIELD,...``) renames
them for other exports:

| key | default field | type | use |
| --- | --- | --- | --- |
| id | ``data_id`` | str or int, optional | record id ``pearl-<id>`` (else ``pearl-<file stem>-<line>``) |
| user_id | ``user_id`` | str or int, optional | kept in ``meta.user_id`` |
| dialogue | ``dialogue`` | list of str, ``"Seeker: ..."`` / ``"Recommender: ..."``; ``""`` allowed | turns |
| persona | ``user_persona`` | str: the watched movies' reviews joined by blank lines | persona summary (provenance ``review``) |
| watched_titles | ``seen_movie_titles`` | list of str | persona watched items |
| watched_reviews | none | list of str (same length) | per-title review texts, for exports that have them |
| target_title | ``gt_movie_title`` | str; ``""`` = no target (dropped) | the item the seeker accepts |
| target_abstract | ``gt_abstract`` | ``Title: ...\\nGenre: ...\\nDirector: ...\\nCast: ...\\nReview: ...`` or plain text | attribute text: the review part (else the text without its ``Title:`` line), sentences naming the title dropped |
| target_genres | ``gt_genre`` | ``"a, b"`` or list of str | attributes |
| target_director | ``gt_director`` | ``"a, b"`` or list of str | attributes |
| target_cast | ``gt_cast`` | ``"a, b"`` or list of str | attributes |
| split | ``split`` | str, optional | split (else the file's: ``train`` / ``valid`` / ``test`` in its name, or ``train``) |

Filtering, as in the paper: empty turns are dropped (a trailing ``[EOD]`` is removed); a
conversation without a target title, or whose target or watched movies are not in the catalogue,
is dropped; a malformed record is an error naming file, line (for ``.json`` lists: the record's
1-based index) and field, or is skipped with that reason under ``on_error``. :class:`PearlReport`
counts what was dropped and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.data.raw_dialogue import RawTurn, build_record, mark_titles, merge_consecutive
from interplay.data.errors import DataFormatError, jsonl_lines
from interplay.data.schema import DialogueRecord
from interplay.episode import Persona, Target, WatchedItem, find_target_leak
from interplay.protocol import Role

HUB_ID = "DLI-Lab/pearl"
DEFAULT_FIELDS: dict[str, str | None] = {
    "id": "data_id", "user_id": "user_id", "dialogue": "dialogue", "persona": "user_persona",
    "watched_titles": "seen_movie_titles", "watched_reviews": None, "target_title": "gt_movie_title",
    "target_abstract": "gt_abstract", "target_genres": "gt_genre", "target_director": "gt_director",
    "target_cast": "gt_cast", "split": "split",
}
REQUIRED = ("dialogue", "persona", "target_title")
_SPEAKER = re.compile(r"^\s*(seeker|recommender)\s*:\s*", re.I)
_EOD = re.compile(r"\s*\[EOD\]\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


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


def resolve_fields(field_map: dict[str, str] | None) -> dict[str, str | None]:
    """The default field names with ``field_map``'s overrides; an unknown key is a ``ValueError``."""
    unknown = sorted(set(field_map or {}) - set(DEFAULT_FIELDS))
    if unknown:
        raise ValueError(f"unknown PEARL field-map key {unknown[0]!r}; keys: {', '.join(DEFAULT_FIELDS)}")
    return {**DEFAULT_FIELDS, **(field_map or {})}


def _strings(value, where: tuple[Path, int], name: str, split_commas: bool) -> list[str]:
    """A list of non-empty strings from a list or (comma-joined when ``split_commas``) string."""
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(",") if split_commas else [value]
        return [v.strip() for v in parts if v.strip()]
    if not isinstance(value, list):
        raise DataFormatError(*where, name, f"expected a list of strings, got {type(value).__name__}")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise DataFormatError(*where, f"{name}[{i}]", f"expected a string, got {type(v).__name__}")
    return [v.strip() for v in value if v.strip()]


def _text(value, where: tuple[Path, int], name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataFormatError(*where, name, f"expected a string, got {type(value).__name__}")
    return value


def _without_leaks(text: str, target: Target) -> str:
    """``text`` without the sentences that reveal the target; paragraphs (blank lines) kept."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", text):
        kept = [s for s in _SENTENCE.split(" ".join(para.split())) if s and find_target_leak(s, target) is None]
        if kept:
            paragraphs.append(" ".join(kept))
    return "\n\n".join(paragraphs)


def abstract_review(abstract: str) -> str:
    """The review part of PEARL's ``Title: ...\\nGenre: ...\\n...\\nReview: ...`` abstract; an
    unstructured abstract whole, less any ``Title:`` line (the title never reaches the user)."""
    m = re.search(r"^Review:[ \t]*", abstract, re.M)
    if m:
        return abstract[m.end():].strip()
    return "\n".join(ln for ln in abstract.splitlines() if not ln.lstrip().lower().startswith("title:")).strip()


def parse_record(obj: dict, where: tuple[Path, int], split: str, catalogue: Catalogue, fields: dict,
                 report: PearlReport, annotator=None) -> DialogueRecord | None:
    """One PEARL record, or ``None`` when the paper's filter drops it (counted in ``report``)."""
    path, line = where
    for key in REQUIRED:
        if fields[key] not in obj:
            raise DataFormatError(path, line, fields[key], "missing")
    get = lambda key: obj.get(fields[key]) if fields[key] else None  # noqa: E731
    dialogue = obj[fields["dialogue"]]
    if not isinstance(dialogue, list):
        raise DataFormatError(path, line, fields["dialogue"], "expected a list of 'Seeker: ...' strings")
    target_title = _text(obj[fields["target_title"]], where, fields["target_title"]).strip()
    persona_text = _text(obj[fields["persona"]], where, fields["persona"]).strip()
    if not persona_text:
        raise DataFormatError(path, line, fields["persona"], "empty")
    watched_titles = _strings(get("watched_titles"), where, fields["watched_titles"], split_commas=False)
    reviews = _strings(get("watched_reviews"), where, fields["watched_reviews"] or "", split_commas=False)
    attrs = [a for key in ("target_genres", "target_director", "target_cast")
             for a in _strings(get(key), where, fields[key] or "", split_commas=True)]
    abstract = _text(get("target_abstract"), where, fields["target_abstract"] or "")
    if not target_title:
        report.dropped["no target title"] += 1
        return None
    target_item = catalogue.resolve(target_title)
    if target_item is None:
        report.dropped["target not in catalogue"] += 1
        return None
    watched_items = [catalogue.resolve(t) for t in watched_titles]
    if any(it is None for it in watched_items):
        report.dropped["watched movie not in catalogue"] += 1
        return None
    target = Target(item_id=target_item.item_id, title=target_item.title)
    target = target.model_copy(update={
        "attributes": [a.lower() for a in attrs if find_target_leak(a, target) is None],
        "attribute_text": _without_leaks(abstract_review(abstract), target).replace("\n\n", " "),
    })
    watched = [WatchedItem(title=it.title, text=_without_leaks(reviews[i], target) if i < len(reviews) else "")
               for i, it in enumerate(watched_items) if find_target_leak(it.title, target) is None][:3]
    raw = []
    known = [target_title, *watched_titles]
    for i, utt in enumerate(dialogue):
        name = f"{fields['dialogue']}[{i}]"
        if not isinstance(utt, str):
            raise DataFormatError(path, line, name, f"expected a string, got {type(utt).__name__}")
        utt = _EOD.sub("", utt)
        m = _SPEAKER.match(utt)
        if utt.strip() and not m:
            raise DataFormatError(path, line, name, "must start with 'Seeker:' or 'Recommender:'")
        text = utt[m.end():].strip() if m else ""
        if not text:
            report.empty_turns_removed += 1
            continue
        text, titles = mark_titles(text, known, catalogue)
        titles = [target_item.title if catalogue.resolve(t) == target_item else t for t in titles]
        raw.append(RawTurn(Role.USER if m.group(1).lower() == "seeker" else Role.RECOMMENDER, text, titles))
    turns = merge_consecutive(raw)
    rec_titles = {t for tr in turns if tr.role is Role.RECOMMENDER for t in tr.titles}
    if target_item.title not in rec_titles:
        report.dropped["target never recommended"] += 1
        return None
    rec_id = get("id")
    user_id = get("user_id")
    record = build_record(
        record_id=f"pearl-{rec_id}" if rec_id not in (None, "") else f"pearl-{path.stem}-{line}",
        source="pearl", split=str(get("split") or split), turns=turns, catalogue=catalogue, annotator=annotator,
        accepted_title=target_item.title, rejected_titles=[], watched_titles=[],
        persona=Persona(summary=_without_leaks(persona_text, target), watched=watched), target=target,
        provenance={"persona": "review", "target_attributes": "source"},
        meta={} if user_id in (None, "") else {"user_id": str(user_id)},
    )
    report.kept += 1
    return record


def _split_of(path: Path) -> str:
    split = next((s for s in ("train", "valid", "validation", "test") if s in path.stem), "train")
    return "valid" if split == "validation" else split


def _rows(path: Path) -> Iterator[tuple[Path, int, object]]:
    """(file, line, record) of one file; a line that is not JSON comes as a :class:`DataFormatError`."""
    if path.suffix == ".jsonl":
        for lineno, line in jsonl_lines(path):
            if isinstance(line, DataFormatError):
                yield path, lineno, line
                continue
            try:
                yield path, lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield path, lineno, DataFormatError(path, lineno, "<json>", exc.msg)
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, exc.lineno, "<json>", exc.msg) from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise DataFormatError(path, None, "<json>", "expected a list of records (or {\"data\": [...]})")
        for i, obj in enumerate(data):
            yield path, i + 1, obj  # the record's index (1-based) stands for its line
    elif path.suffix == ".parquet":
        from datasets import Dataset

        for i, obj in enumerate(Dataset.from_parquet(str(path))):
            yield path, i + 1, obj
    else:
        raise DataFormatError(path, None, "<file>", "expected .json, .jsonl or .parquet")


def load_pearl(path: str | Path, catalogue: Catalogue, field_map: dict[str, str] | None = None,
               on_error: Callable[[DataFormatError], None] | None = None, report: PearlReport | None = None,
               annotator=None) -> Iterator[DialogueRecord]:
    """PEARL records from a local file or folder of files, or from the hub (``path == "hub"``)."""
    fields = resolve_fields(field_map)
    report = report if report is not None else PearlReport()
    if str(path) == "hub":
        from datasets import load_dataset

        ds = load_dataset(HUB_ID)
        rows = ((Path(HUB_ID) / name, i + 1, obj) for name, part in ds.items() for i, obj in enumerate(part))
    else:
        p = Path(path)
        if not p.exists():
            raise DataFormatError(p, None, "<file>", "missing")
        files = sorted(f for f in p.iterdir() if f.suffix in (".json", ".jsonl", ".parquet")) if p.is_dir() else [p]
        if not files:
            raise DataFormatError(p, None, "<file>", "no .json, .jsonl or .parquet file")
        rows = (row for f in files for row in _rows(f))
    for file, line, obj in rows:
        report.read += 1
        try:
            if isinstance(obj, DataFormatError):
                raise obj
            if not isinstance(obj, dict):
                raise DataFormatError(file, line, "<record>", f"expected an object, got {type(obj).__name__}")
            record = parse_record(obj, (file, line), _split_of(file), catalogue, fields, report, annotator)
        except (DataFormatError, ValueError) as exc:
            err = exc if isinstance(exc, DataFormatError) else DataFormatError(file, line, "<record>", str(exc))
            report.dropped["invalid"] += 1
            if on_error is None:
                raise err from None
            on_error(err)
            continue
        if record is not None:
            yield record
