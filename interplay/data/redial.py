"""ReDial loader (original JSONL schema).

Per line: ``conversationId``, ``initiatorWorkerId`` (the seeker = user), ``respondentWorkerId``,
``messages[{text, senderWorkerId, messageId, timeOffset}]`` with movies as ``@<id>``,
``movieMentions{id: title}``, ``initiatorQuestions`` / ``respondentQuestions{id: {suggested, seen,
liked}}`` (1 yes, 0 no, 2 did not say). The seeker's own answers are used, the respondent's when
the seeker gave none. Target: the first movie (in dialogue order) the recommender suggested and the
seeker liked, preferring one the seeker had not seen; rejections: suggested movies the seeker did
not like; persona: movies the seeker had seen and liked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.data.raw_dialogue import RawTurn, build_record, merge_consecutive
from interplay.data.errors import DataFormatError, jsonl_lines
from interplay.data.schema import DialogueRecord
from interplay.protocol import Role, mark_title

SPLIT_FILES = {"train": "train_data.jsonl", "valid": "valid_data.jsonl", "test": "test_data.jsonl"}
_MENTION = re.compile(r"@(\d+)")


def clean_title(title: str) -> str:
    """``"Bridesmaids  (2011)"`` -> ``"Bridesmaids (2011)"``; ``"Why Him%3F (2016)"`` -> ``"Why Him? (2016)"``
    (some ReDial titles are URL-quoted)."""
    from urllib.parse import unquote

    return re.sub(r"\s+", " ", unquote(title) if re.search(r"%[0-9A-Fa-f]{2}", title) else title).strip()


def _require(obj: dict, key: str, kind: type | tuple[type, ...], path: Path, line: int):
    """``obj[key]``, or a :class:`DataFormatError` naming the field when it is missing or of another type."""
    if key not in obj:
        raise DataFormatError(path, line, key, "missing")
    if not isinstance(obj[key], kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataFormatError(path, line, key, f"expected {names}, got {type(obj[key]).__name__}")
    return obj[key]


def parse_conversation(obj: dict, path: Path, line: int, split: str, catalogue: Catalogue,
                       annotator=None) -> DialogueRecord:
    """One ReDial conversation (a parsed JSONL line) as a record; extra fields are ignored."""
    conv_id = _require(obj, "conversationId", (str, int), path, line)
    seeker = _require(obj, "initiatorWorkerId", int, path, line)
    messages = _require(obj, "messages", list, path, line)
    mentions = {}
    for k, v in _require(obj, "movieMentions", dict, path, line).items():
        if v is not None and not isinstance(v, str):
            raise DataFormatError(path, line, f"movieMentions.{k}", f"expected a title, got {type(v).__name__}")
        if v:
            mentions[str(k)] = clean_title(v)
    answer_field = "initiatorQuestions" if obj.get("initiatorQuestions") else "respondentQuestions"
    answers = obj.get(answer_field) or {}
    if not isinstance(answers, dict):
        raise DataFormatError(path, line, answer_field, f"expected an object, got {type(answers).__name__}")
    raw: list[RawTurn] = []
    order: list[str] = []  # movie ids in order of first mention
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise DataFormatError(path, line, f"messages[{i}]", f"expected an object, got {type(m).__name__}")
        for key in ("text", "senderWorkerId"):
            if key not in m:
                raise DataFormatError(path, line, f"messages[{i}].{key}", "missing")
        titles = []

        def sub(match: re.Match) -> str:
            mid = match.group(1)
            if mid not in mentions:
                return match.group(0)
            if mid not in order:
                order.append(mid)
            titles.append(mentions[mid])
            return mark_title(mentions[mid])

        text = _MENTION.sub(sub, str(m["text"])).strip()
        role = Role.USER if m["senderWorkerId"] == seeker else Role.RECOMMENDER
        raw.append(RawTurn(role, text, titles))
    turns = merge_consecutive(raw)

    def ans(mid: str, key: str) -> int | None:
        a = answers.get(mid)
        return a.get(key) if isinstance(a, dict) else None

    suggested_liked = [mid for mid in order if ans(mid, "suggested") == 1 and ans(mid, "liked") == 1]
    new_liked = [mid for mid in suggested_liked if ans(mid, "seen") == 0]
    target_mid = (new_liked or suggested_liked or [None])[0]
    accepted = mentions[target_mid] if target_mid else None
    rejected = [mentions[mid] for mid in order if ans(mid, "suggested") == 1 and ans(mid, "liked") == 0]
    watched = [mentions[mid] for mid in order if ans(mid, "seen") == 1 and ans(mid, "liked") == 1
               and mid != target_mid]
    # every item the seeker's form marks as suggested is a human verdict (liked 2: did not say)
    judged = [(mentions[mid], _binary(ans(mid, "liked")), _binary(ans(mid, "seen")), "form")
              for mid in order if ans(mid, "suggested") == 1]
    return build_record(
        record_id=f"redial-{conv_id}", source="redial", split=split, turns=turns, catalogue=catalogue,
        annotator=annotator, accepted_title=accepted, rejected_titles=rejected, watched_titles=watched,
        target_title=accepted, meta={"conversation_id": str(conv_id), "form": answer_field}, judged=judged,
        source_ids={title: f"redial:{mid}" for mid, title in mentions.items()},
    )


def _binary(answer) -> int | None:
    """A form answer as 1 / 0, or None for 2 (did not say) and missing answers."""
    return answer if answer in (0, 1) else None


def load_redial(path: str | Path, catalogue: Catalogue, splits: list[str] | None = None,
                on_error: Callable[[DataFormatError], None] | None = None, annotator=None
                ) -> Iterator[DialogueRecord]:
    """Records of ``path``: a folder with any of the split files, or one JSONL file.

    A folder needs at least one of ``train_data.jsonl``, ``valid_data.jsonl``, ``test_data.jsonl``
    (all that are there are read; ``splits`` names ones that must be there). Malformed lines raise
    :class:`DataFormatError`, or go to ``on_error(err)`` when given.
    """
    path = Path(path)
    if path.is_dir():
        wanted = splits if splits is not None else [s for s, f in SPLIT_FILES.items() if (path / f).exists()]
        files = [(s, path / SPLIT_FILES[s]) for s in wanted]
        if not files:
            raise DataFormatError(path, None, "<file>", f"no split file ({', '.join(SPLIT_FILES.values())})")
    else:
        files = [(_split_of(path), path)]
    for split, file in files:
        if not file.exists():
            raise DataFormatError(file, None, "<file>", "missing")
        for lineno, line in jsonl_lines(file):
            try:
                if isinstance(line, DataFormatError):
                    raise line
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(file, lineno, "<json>", exc.msg) from None
                if not isinstance(obj, dict):
                    raise DataFormatError(file, lineno, "<json>", "not an object")
                yield parse_conversation(obj, file, lineno, split, catalogue, annotator)
            except (DataFormatError, ValueError, TypeError, KeyError, AttributeError) as exc:
                err = exc if isinstance(exc, DataFormatError) else DataFormatError(
                    file, lineno, "<record>", f"{type(exc).__name__}: {exc}")
                if on_error is None:
                    raise err from None
                on_error(err)


def _split_of(file: Path) -> str:
    for split, name in SPLIT_FILES.items():
        if file.name == name or file.stem.startswith(split):
            return split
    return "train"
