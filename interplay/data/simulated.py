"""Simulated dialogues as records: the episodes of ``interplay simulate`` runs, read back as
training data (``interplay data build --source episodes --path RUN_DIR``).

This is the other side of the project's transfer question: a simulator trained on simulated
dialogues, evaluated on the same held-out human dialogues as one trained on real ones. Each
finished episode becomes one :class:`DialogueRecord`: the episode's persona and target, its turns
as logged, ``outcome.accepted_item`` when the user accepted and every other recommended item as
rejected. An episode that did not finish as a dialogue (``protocol_error``, ``agent_error``) or
holds an unparsed turn is invalid data: the error names the file, the line and the field, and
``--skip-invalid`` drops it into the build report instead. Splits are assigned by a hash of the
record id (``valid_share`` to valid, the rest to train), so a rebuild gives the same split; the
simulated records never enter a test split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from interplay.catalogue import Catalogue
from interplay.data.errors import DataFormatError, jsonl_lines
from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode_log import EPISODES_FILE, EpisodeLog, Termination

#: terminations of a finished dialogue (the user accepted, or the turn cap ended it)
FINISHED = (Termination.ACCEPTED, Termination.MAX_TURNS)


def split_of(record_id: str, valid_share: float) -> str:
    """``valid`` for a stable ``valid_share`` of record ids, ``train`` for the rest."""
    h = int.from_bytes(hashlib.sha1(record_id.encode()).digest()[:8], "big") / 2**64
    return "valid" if h < valid_share else "train"


def episode_record(ep: EpisodeLog, record_id: str, split: str) -> DialogueRecord:
    """One finished episode as a record (raises ValueError naming the field when it is not one)."""
    if ep.termination not in FINISHED:
        raise ValueError(f"termination: the episode ended in {ep.termination.value}, not a finished dialogue")
    turns = []
    for t in ep.turns:
        if t.action is None or t.text is None:
            raise ValueError(f"turns[{t.index}]: the turn never parsed ({t.parse_error or 'no text'})")
        turns.append(RecordTurn(role=t.role, action=t.action, text=t.text, titles=list(t.titles)))
    accepted = ep.accepted_item if ep.termination is Termination.ACCEPTED else None
    rejected = [x for x in dict.fromkeys(ep.recommended_items) if x != accepted]
    return DialogueRecord(
        id=record_id, source="episodes", split=split, persona=ep.persona, target=ep.target, turns=turns,
        outcome=Outcome(accepted_item=accepted, rejected_items=rejected),
        meta={"simulated": True, "episode_id": ep.episode_id, "from_record": ep.record_id,
              "user_spec": ep.user_spec, "recommender_spec": ep.recommender_spec,
              "termination": ep.termination.value, "seed": ep.seed})


def load_episodes(path: str | Path, catalogue: Catalogue | None = None, on_error=None,
                  valid_share: float = 0.1) -> Iterator[DialogueRecord]:
    """Records of one run's ``episodes.jsonl`` (``path`` is the run folder or the file). A resumed
    run's re-run episode counts once (its latest line). Record ids are ``RUN/EPISODE`` so runs
    with the same episode ids can be combined."""
    path = Path(path)
    if path.is_dir():
        path = path / EPISODES_FILE
    if not path.exists():
        raise DataFormatError(path, None, "<file>", "no episode log here (run 'interplay simulate' first)")
    run = path.parent.name
    latest: dict[str, tuple[int, EpisodeLog | None, str | None]] = {}
    for lineno, line in jsonl_lines(path):
        if isinstance(line, DataFormatError):
            latest[f"<line {lineno}>"] = (lineno, None, f"{line.field}: {line.message}")
            continue
        try:
            ep = EpisodeLog.model_validate_json(line)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "<line>"
            latest[f"<line {lineno}>"] = (lineno, None, f"{field}: {err['msg']}")
            continue
        latest.pop(ep.episode_id, None)  # the latest line of an episode wins, in its place
        latest[ep.episode_id] = (lineno, ep, None)
    for lineno, ep, problem in latest.values():
        try:
            if ep is None:
                field, _, msg = problem.partition(": ")
                raise DataFormatError(path, lineno, field, msg)
            record_id = f"{run}/{ep.episode_id}"
            try:
                record = episode_record(ep, record_id, split_of(record_id, valid_share))
            except ValidationError as exc:
                err = exc.errors()[0]
                raise DataFormatError(path, lineno, ".".join(str(p) for p in err["loc"]) or "<record>",
                                      err["msg"]) from None
            except ValueError as exc:
                field, _, msg = str(exc).partition(": ")
                raise DataFormatError(path, lineno, field, msg) from None
            yield record
        except DataFormatError as err:
            if on_error is None:
                raise
            on_error(err)
