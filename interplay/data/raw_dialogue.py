"""Assembling a :class:`DialogueRecord` from a source's turns: actions, acceptance, persona, target.

Shared by every loader. Rules:
- actions come from the source's gold labels when it has them, else from the rule annotator;
- when the source says the user accepted an item, the acceptance turn is the first user turn after
  the recommender first named that item: it becomes ``accept`` and the record ends there;
- any other ``accept`` becomes ``feedback`` (a record has one acceptance, and it is final);
- the target is the accepted item (or the source's own target), matched in the catalogue; its
  attributes and the persona come from the catalogue unless the source has its own texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from interplay.catalogue import Catalogue, normalize_title
from interplay.data.annotate import ACTION_PRECEDENCE, RuleAnnotator
from interplay.data.attributes import match_all, persona_from_items, target_from_item
from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode import Persona, Target
from interplay.protocol import Action, Role, mark_title


@dataclass
class RawTurn:
    """A source turn before annotation: text with titles already marked."""

    role: Role
    text: str
    titles: list[str]
    gold_action: Action | None = None
    meta: dict = field(default_factory=dict)


def merge_consecutive(turns: list[RawTurn]) -> list[RawTurn]:
    """Consecutive messages of one speaker become one turn (texts joined, titles concatenated)."""
    merged: list[RawTurn] = []
    for t in turns:
        if merged and merged[-1].role is t.role:
            last = merged[-1]
            last.text = f"{last.text} {t.text}".strip()
            last.titles += [x for x in t.titles if x not in last.titles]
            for k, v in t.meta.items():
                if isinstance(v, list):
                    last.meta.setdefault(k, [])
                    last.meta[k] += [x for x in v if x not in last.meta[k]]
            if t.gold_action is not None:
                cands = [a for a in (last.gold_action, t.gold_action) if a is not None]
                last.gold_action = min(cands, key=ACTION_PRECEDENCE.index)
        else:
            merged.append(RawTurn(t.role, t.text, list(t.titles), t.gold_action, dict(t.meta)))
    return [t for t in merged if t.text.strip()]


def _same(a: str, b: str) -> bool:
    return normalize_title(a) == normalize_title(b) or normalize_title(a, False) == normalize_title(b, False)


def build_record(
    *, record_id: str, source: str, split: str, turns: list[RawTurn], catalogue: Catalogue,
    accepted_title: str | None, rejected_titles: list[str], watched_titles: list[str],
    target_title: str | None = None, persona: Persona | None = None, target: Target | None = None,
    provenance: dict | None = None, meta: dict | None = None, annotator=None,
) -> DialogueRecord:
    """One record from merged turns and the source's outcome (see the module docstring).

    ``annotator`` labels turns without a gold action (default: the rule annotator); each such
    turn's ``meta.annotated`` names what labelled it."""
    meta = dict(meta or {})
    labels = (annotator or RuleAnnotator()).annotate_dialogue([(t.role, t.text, t.titles) for t in turns])
    out: list[RecordTurn] = []
    for t, (label, by) in zip(turns, labels):
        gold = t.gold_action is not None
        out.append(RecordTurn(role=t.role, action=t.gold_action if gold else label, text=t.text, titles=t.titles,
                              meta={**t.meta, **({} if gold else {"annotated": by})}))
    accept_at = None
    if accepted_title is not None:
        first_rec = next((i for i, t in enumerate(out) if t.role is Role.RECOMMENDER
                          and any(_same(x, accepted_title) for x in t.titles)), None)
        if first_rec is not None:
            accept_at = next((i for i in range(first_rec + 1, len(out)) if out[i].role is Role.USER), None)
        if accept_at is None:
            meta["acceptance_dropped"] = "no user turn after the item was recommended"
            accepted_title = None
    for i, t in enumerate(out):
        if t.action is Action.ACCEPT and i != accept_at:
            out[i] = t.model_copy(update={"action": Action.FEEDBACK, "meta": {**t.meta, "relabelled": "accept"}})
    if accept_at is not None:
        t = out[accept_at]
        if t.action is not Action.ACCEPT:
            out[accept_at] = t.model_copy(update={"action": Action.ACCEPT,
                                                  "meta": {**t.meta, "accept_from": "outcome", "was": t.action.value}})
        out = out[: accept_at + 1]

    shown = [x for t in out if t.role is Role.RECOMMENDER for x in t.titles]
    rejected_titles = [r for r in rejected_titles if any(_same(r, x) for x in shown)]
    target_title = target_title or accepted_title
    if target is None and target_title is not None:
        item = catalogue.match(target_title)
        meta["target_in_catalogue"] = item is not None
        if item is not None:
            target = target_from_item(item)
        else:
            target = Target(item_id=f"{source}:{normalize_title(target_title)}", title=target_title)
    prov = dict(provenance or {})
    if persona is None:
        persona, dropped = persona_from_items(match_all(watched_titles, catalogue), target)
        prov.setdefault("persona", "catalogue")
        if dropped:
            meta["watched_dropped_as_leak"] = dropped
    if target is not None:
        prov.setdefault("target_attributes", "catalogue")
    return DialogueRecord(
        id=record_id, source=source, split=split, persona=persona, target=target, turns=out,
        outcome=Outcome(accepted_item=accepted_title, rejected_items=rejected_titles), provenance=prov, meta=meta,
    )


_YEAR_MENTION = re.compile(r"\((\d{4})\)")


def mark_titles(text: str, names: list[str], catalogue: Catalogue | None = None) -> tuple[str, list[str]]:
    """Mark titles in plain text with ``<movie_title>``, never inside an already marked span.

    ``names`` (known titles, year optional) are marked at their first mention, longest first, with
    a following ``(Year)`` taken in. With a catalogue, any other ``Name (Year)`` whose name (up to
    eight words before the year) the catalogue knows is marked too. Returns text and titles found.
    """
    spans: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in spans)

    for name in sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True):
        bare = re.sub(r"\s*\(\d{4}\)$", "", name)
        for m in re.finditer(rf"(?<![\w]){re.escape(bare)}(?![\w])(\s*\(\d{{4}}\))?", text, re.I):
            if free(m.start(), m.end()):
                year = m.group(1).strip() if m.group(1) else (name[len(bare):].strip() or "")
                spans.append((m.start(), m.end(), f"{text[m.start():m.start() + len(bare)]} {year}".strip()))
                break
    if catalogue is not None:
        for m in _YEAR_MENTION.finditer(text):
            words = list(re.finditer(r"\S+", text[: m.start()]))[-8:]
            for w in words:  # longest candidate first
                cand = text[w.start(): m.end()]
                if free(w.start(), m.end()) and catalogue.find(cand) is not None:
                    spans.append((w.start(), m.end(), cand))
                    break
    out, titles, pos = [], [], 0
    for s, e, title in sorted(spans):
        out.append(text[pos:s] + mark_title(title))
        titles.append(title)
        pos = e
    out.append(text[pos:])
    return "".join(out), titles
