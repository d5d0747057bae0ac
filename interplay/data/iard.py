"""IARD loader (``iard_gold.json``): ReDial dialogues with gold dialogue acts per utterance.

Per conversation: ``conversation_id`` and ``conversation[{participant: USER/AGENT, utterance,
dialogue_acts[{intent, slot_values[[slot, value, ...]]}]}]``. Actions come from the gold intents
(table ``IARD_ACTIONS`` in ``interplay/data/annotate.py``); titles from the ``TITLE`` slots, marked
in the text where it spells them. The accepted item is the last title the agent recommended
before the user's first ``ACC``; titles followed by ``REJ`` are rejections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.data.annotate import iard_action
from interplay.data.raw_dialogue import RawTurn, build_record, mark_titles, merge_consecutive
from interplay.data.errors import DataFormatError
from interplay.data.schema import DialogueRecord
from interplay.protocol import Action, Role


def load_iard(path: str | Path, catalogue: Catalogue, split: str = "test", on_error=None,
              annotator=None) -> Iterator[DialogueRecord]:
    """Records of ``iard_gold.json`` (all in one split, ``test`` by default: it is a gold set)."""
    path = Path(path)
    if path.is_dir():
        path = path / "iard_gold.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, "<json>", exc.msg) from None
    if not isinstance(data, list):
        raise DataFormatError(path, 1, "<json>", "expected a list of conversations")
    for n, conv in enumerate(data):
        try:
            yield _conversation(conv, n, path, split, catalogue, annotator)
        except (DataFormatError, ValueError, KeyError) as exc:
            err = exc if isinstance(exc, DataFormatError) else DataFormatError(path, None, f"[{n}]", str(exc))
            if on_error is None:
                raise err from None
            on_error(err)


def _conversation(conv: dict, n: int, path: Path, split: str, catalogue: Catalogue,
                  annotator=None) -> DialogueRecord:
    if not isinstance(conv, dict) or not isinstance(conv.get("conversation"), list):
        raise DataFormatError(path, None, f"[{n}].conversation", "missing or not a list")
    raw, accepted, rejected, last_rec = [], None, [], []
    for i, utt in enumerate(conv["conversation"]):
        where = f"[{n}].conversation[{i}]"
        part = utt.get("participant")
        if part not in ("USER", "AGENT"):
            raise DataFormatError(path, None, f"{where}.participant", f"expected USER or AGENT, got {part!r}")
        intents = [a.get("intent") for a in utt.get("dialogue_acts", [])]
        try:
            action = iard_action(part, intents)
        except KeyError as exc:
            raise DataFormatError(path, None, f"{where}.dialogue_acts", f"unknown intent {exc}") from None
        names = [v[1] for a in utt["dialogue_acts"] for v in a.get("slot_values", []) if v and v[0] == "TITLE" and v[1]]
        text, titles = mark_titles(str(utt.get("utterance", "")), names)
        role = Role.USER if part == "USER" else Role.RECOMMENDER
        if role is Role.RECOMMENDER and action is Action.RECOMMEND and titles:
            last_rec = titles
        if role is Role.USER and "REJ" in intents and last_rec:
            rejected.extend(t for t in last_rec if t not in rejected)
        if role is Role.USER and action is Action.ACCEPT and accepted is None and last_rec:
            accepted = last_rec[-1]
        raw.append(RawTurn(role, text, titles, gold_action=action, meta={"intents": intents}))
    turns = merge_consecutive(raw)
    watched = [t for turn in turns if turn.role is Role.USER for t in turn.titles if t != accepted]
    return build_record(
        record_id=f"iard-{conv.get('conversation_id', n)}", source="iard", split=split, turns=turns,
        catalogue=catalogue, annotator=annotator, accepted_title=accepted, rejected_titles=[r for r in rejected if r != accepted],
        watched_titles=watched, meta={"conversation_id": str(conv.get("conversation_id", n))},
    )
