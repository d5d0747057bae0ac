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
from interplay.data.schema import DialogueRecord, HumanDecision, ItemRef, Outcome, RecordTurn
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


#: a source's verdict on a suggested item: (title as the source spells it, accept 1/0/None, seen
#: 1/0/None, origin) -- see :class:`~interplay.data.schema.HumanDecision`
Judged = tuple[str, "int | None", "int | None", str]


def resolve_items(titles: list[str], catalogue: Catalogue, source: str,
                  source_ids: dict[str, str] | None = None) -> dict[str, ItemRef]:
    """Each distinct title resolved once (:meth:`Catalogue.resolve`); one the catalogue lacks gets
    the source's own id for it (``source_ids``) or ``<source>:<normalised title>``."""
    out: dict[str, ItemRef] = {}
    for title in titles:
        if title in out or not title:
            continue
        item = catalogue.resolve(title)
        if item is not None:
            out[title] = ItemRef(title=title, item_id=item.item_id, in_catalogue=True)
        else:
            fallback = (source_ids or {}).get(title) or f"{source}:{normalize_title(title)}"
            out[title] = ItemRef(title=title, item_id=fallback, in_catalogue=False)
    return out


def place_decisions(judged: list[Judged], whole: list[RecordTurn], items: dict[str, ItemRef],
                    target_id: str | None, meta: dict) -> list[HumanDecision]:
    """Each verdict at the recommender turn of ``whole`` that first names its item (by id), with
    its slice by provenance; verdicts on items no recommender turn names are counted in
    ``meta["decisions_unplaced"]``. One verdict per item (the first given)."""
    first_named: dict[str, int] = {}
    for i, t in enumerate(whole):
        if t.role is Role.RECOMMENDER:
            for x in t.marked_titles:
                first_named.setdefault(items[x].item_id, i)
    out: list[HumanDecision] = []
    done: set[str] = set()
    for title, accept, seen, origin in judged:
        item_id = items[title].item_id
        if item_id in done:
            continue
        done.add(item_id)
        if item_id not in first_named:
            meta["decisions_unplaced"] = meta.get("decisions_unplaced", 0) + 1
            continue
        if target_id is None:
            where = "no-target"
        elif item_id == target_id:
            where = "target"
        else:
            where = {0: "other-unseen", 1: "other-seen"}.get(seen, "other-seen-unknown")
        out.append(HumanDecision(item_id=item_id, title=title, turn=first_named[item_id], accept=accept,
                                 seen=seen, slice=where, origin=origin))
    return sorted(out, key=lambda d: d.turn)


def build_record(
    *, record_id: str, source: str, split: str, turns: list[RawTurn], catalogue: Catalogue,
    accepted_title: str | None, rejected_titles: list[str], watched_titles: list[str],
    target_title: str | None = None, persona: Persona | None = None, target: Target | None = None,
    provenance: dict | None = None, meta: dict | None = None, annotator=None,
    judged: list[Judged] | None = None, source_ids: dict[str, str] | None = None,
) -> DialogueRecord:
    """One record from merged turns and the source's outcome (see the module docstring).

    Every title the record names is resolved to an item once, here (``record.items``); the
    acceptance, the rejections and the verdicts are placed by item id. ``judged``: the source's
    verdicts on suggested items (default: the outcome's accepted and rejected items). Turns after
    the acceptance are kept as ``tail``. ``annotator`` labels turns without a gold action (default:
    the rule annotator); each such turn's ``meta.annotated`` names what labelled it."""
    meta = dict(meta or {})
    labels = (annotator or RuleAnnotator()).annotate_dialogue([(t.role, t.text, t.titles) for t in turns])
    out: list[RecordTurn] = []
    for t, (label, by) in zip(turns, labels):
        gold = t.gold_action is not None
        out.append(RecordTurn(role=t.role, action=t.gold_action if gold else label, text=t.text, titles=t.titles,
                              meta={**t.meta, **({} if gold else {"annotated": by})}))
    named = [x for t in out for x in (*t.marked_titles, *t.titles)]
    judged_titles = [j[0] for j in judged or []]
    items = resolve_items([*named, *([accepted_title] if accepted_title else []), *rejected_titles,
                           *([target_title] if target_title else []), *judged_titles], catalogue, source, source_ids)
    accept_at = None
    if accepted_title is not None:
        accepted_id = items[accepted_title].item_id
        first_rec = next((i for i, t in enumerate(out) if t.role is Role.RECOMMENDER
                          and any(items[x].item_id == accepted_id for x in t.marked_titles)), None)
        if first_rec is not None:
            accept_at = next((i for i in range(first_rec + 1, len(out)) if out[i].role is Role.USER), None)
        if accept_at is None:
            meta["acceptance_dropped"] = "no user turn after the item was recommended"
            accepted_title = None
    for i, t in enumerate(out):
        if t.action is Action.ACCEPT and i != accept_at:
            out[i] = t.model_copy(update={"action": Action.FEEDBACK, "meta": {**t.meta, "relabelled": "accept"}})
    tail: list[RecordTurn] = []
    if accept_at is not None:
        t = out[accept_at]
        if t.action is not Action.ACCEPT:
            out[accept_at] = t.model_copy(update={"action": Action.ACCEPT,
                                                  "meta": {**t.meta, "accept_from": "outcome", "was": t.action.value}})
        out, tail = out[: accept_at + 1], out[accept_at + 1:]

    shown = {items[x].item_id for t in out if t.role is Role.RECOMMENDER for x in t.marked_titles}
    rejected_titles = [r for r in rejected_titles if items[r].item_id in shown]
    target_title = target_title or accepted_title
    if target is None and target_title is not None:
        item = catalogue.resolve(target_title)
        meta["target_in_catalogue"] = item is not None
        if item is not None:
            target = target_from_item(item)
        else:
            target = Target(item_id=items[target_title].item_id, title=target_title)
    prov = dict(provenance or {})
    if persona is None:
        persona, dropped = persona_from_items(match_all(watched_titles, catalogue), target)
        prov.setdefault("persona", "catalogue")
        if dropped:
            meta["watched_dropped_as_leak"] = dropped
    if target is not None:
        prov.setdefault("target_attributes", "catalogue")
    if judged is None:
        judged = ([(accepted_title, 1, None, "outcome")] if accepted_title else []) + \
                 [(r, 0, None, "outcome") for r in rejected_titles]
    decisions = place_decisions(judged, [*out, *tail], items, target.item_id if target else None, meta)
    return DialogueRecord(
        id=record_id, source=source, split=split, persona=persona, target=target, turns=out,
        outcome=Outcome(accepted_item=accepted_title, rejected_items=rejected_titles), provenance=prov, meta=meta,
        items=items, tail=tail, decisions=decisions,
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
