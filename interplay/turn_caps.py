"""Per-role turn-length caps taken from people's turns in the data.

ReDial turns are short (a few words); a simulator allowed 96 tokens per turn can ramble far past
anything a person wrote. The cap of a role is a high percentile (``percentile``, nearest rank) of
the number of tokens each human turn of that role takes in the wire format the model writes after
the prompt's ``<action>`` prefill (``<inform></action><response>...</response>``), counted with
that role's own tokenizer, over the records of the data's ``train`` split (the data a simulator
learns from; the run's own split when the folder has no train split). Runs on data without human
turns (the demo set, a JSON file of personas) get no cap. A constrained row that reaches its cap
is closed (only turn-ending tokens, :mod:`interplay.backends.constrained`), so a capped turn
stays legal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from interplay.protocol import ACTION_OPEN, Role, Turn, format_turn

#: records read to measure turn lengths (the first ones of the split; enough for a percentile)
MAX_RECORDS = 2000


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    """The ``percentile`` (0-100) of ``values`` by the nearest-rank method: the smallest value
    with at least ``percentile`` % of the values at or below it. ValueError on no values."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile {percentile} is not in (0, 100]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percentile / 100 * len(ordered)) - 1)]


def turn_tokens(turns: Iterable[tuple[Role, object, str]], tokenizer, role: Role) -> list[int]:
    """Tokens of each ``role`` turn ``(role, action, text)`` in the wire format after the
    ``<action>`` prefill."""
    texts = [format_turn(Turn(action, text))[len(ACTION_OPEN):] for r, action, text in turns
             if r is role and action is not None]
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def caps_from_records(records, tokenizers: dict[Role, object], percentile: float) -> dict[Role, int]:
    """Each role's cap: the ``percentile`` of its human turns' token counts (roles without a
    tokenizer or without turns are left out)."""
    turns = [(t.role, t.action, t.text) for r in records for t in r.turns]
    caps = {}
    for role, tok in tokenizers.items():
        counts = turn_tokens(turns, tok, role)
        if counts:
            caps[role] = int(nearest_rank(counts, percentile))
    return caps


def caps_records(data: str, split: str) -> list:
    """The records caps are measured on: the built folder's ``train`` split, else ``split``
    (none for the demo set or a JSON file)."""
    folder = Path(data)
    if not folder.is_dir():
        return []
    from interplay.data.build import read_records

    chosen = "train" if (folder / "train.jsonl").is_file() else split
    if not (folder / f"{chosen}.jsonl").is_file():
        return []
    return read_records(folder, chosen)[:MAX_RECORDS]
