"""``interplay data build``: a source's records, validated, written per split as JSONL.

Output folder: ``{split}.jsonl`` (one :class:`DialogueRecord` per line, loadable with HF
``datasets.load_dataset("json", ...)``), ``catalogue.jsonl`` (the item table) and ``build.json``
(counts read per source path and written per split, duplicate record ids dropped, skipped records
with reasons, target match rate). Several paths of one source (e.g. ReDial and a folder of more
ReDial dialogues) build one data set; see :func:`pick_copies` for which copy of a duplicated
record id is kept. Everything is written to a temporary
folder first and moved into place at the end, so a failed build leaves the old folder untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from interplay.catalogue import Catalogue, Item
from interplay.data.annotate import make_annotator
from interplay.data.errors import DataFormatError
from interplay.data.movielens import load_movielens_catalogue
from interplay.data.schema import DialogueRecord
from interplay.data.sources import SourceContext, get_source

CATALOGUE_FILE = "catalogue.jsonl"
BUILD_FILE = "build.json"


def default_data_root() -> Path:
    """``$INTERPLAY_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("INTERPLAY_DATA", "../shared/data"))


def iter_records(source: str, path: str | Path, catalogue: Catalogue, on_error=None, pearl_report=None,
                 field_map: dict | None = None, annotator=None):
    """Records of one source (a name of :mod:`interplay.data.sources`, or ``module:function``)."""
    ctx = SourceContext(catalogue=catalogue, on_error=on_error, annotator=annotator,
                        options={"field_map": field_map, "pearl_report": pearl_report})
    return get_source(source).loader(Path(path), ctx)


#: how held out a split is: among copies of one record id the most held-out one is kept
HELD_OUT = {"test": 2, "valid": 1, "dev": 1}


def pick_copies(copies: list[tuple[str, str]]) -> dict[str, int]:
    """For ``(record id, split)`` pairs in reading order (sources in the order given), the index
    of the copy kept for each id: the one in the most held-out split (test, then valid/dev, then
    any other), the first read among equals. So the first source's copy wins, except that a
    conversation held out anywhere never lands in a training split."""
    best: dict[str, int] = {}
    for i, (rec_id, split) in enumerate(copies):
        j = best.get(rec_id)
        if j is None or HELD_OUT.get(split, 0) > HELD_OUT.get(copies[j][1], 0):
            best[rec_id] = i
    return best


def build_dataset(source: str, path: str | Path | Sequence[str | Path], out: str | Path,
                  catalogue_root: str | Path | None = None, skip_invalid: bool = False, progress: bool = True,
                  field_map: dict | None = None, annotator: str = "rule") -> dict:
    """Build ``out`` from one or more files or folders of a source; return the build report (also
    in ``out/build.json``). A record id read more than once is written once (:func:`pick_copies`);
    the report counts and lists the dropped copies."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from interplay.data.pearl import PearlReport

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise ValueError("no source path given")
    get_source(source)  # an unknown source fails before anything is written
    catalogue = load_movielens_catalogue(catalogue_root or default_data_root())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    skipped: list[str] = []
    pearl_report = PearlReport()
    read: dict[str, Counter] = {str(p): Counter() for p in paths}
    copies: list[tuple[str, str]] = []  # (record id, split) of every record read, in order
    origin: list[str] = []  # the path each one came from
    target_found: list[bool | None] = []  # target matched in the catalogue (None: no target)
    counts: Counter = Counter()
    matched: Counter = Counter()
    try:
        on_error = (lambda err: skipped.append(str(err))) if skip_invalid else None
        labeller = make_annotator(annotator)
        with Progress(SpinnerColumn(), TextColumn("[bold]build {task.fields[source]}"),
                      TextColumn("{task.completed} records"), TimeElapsedColumn(), disable=not progress) as bar, \
                (tmp / ".all.jsonl").open("w") as all_fh:
            task = bar.add_task("build", total=None, source=source)
            for p in paths:
                for rec in iter_records(source, p, catalogue, on_error, pearl_report, field_map, labeller):
                    all_fh.write(rec.model_dump_json() + "\n")
                    copies.append((rec.id, rec.split))
                    origin.append(str(p))
                    target_found.append(None if rec.target is None
                                        else bool(rec.meta.get("target_in_catalogue", True)))
                    read[str(p)][rec.split] += 1
                    bar.update(task, advance=1)
        kept = pick_copies(copies)
        duplicates = [{"id": rec_id, "dropped": f"{origin[i]} ({split})",
                       "kept": f"{origin[kept[rec_id]]} ({copies[kept[rec_id]][1]})"}
                      for i, (rec_id, split) in enumerate(copies) if kept[rec_id] != i]
        handles: dict[str, TextIO] = {}
        with (tmp / ".all.jsonl").open() as all_fh:
            for i, line in enumerate(all_fh):
                rec_id, split = copies[i]
                if kept[rec_id] != i:
                    continue
                fh = handles.get(split) or handles.setdefault(split, (tmp / f"{split}.jsonl").open("w"))
                fh.write(line)
                counts[split] += 1
                if target_found[i] is not None:
                    matched["targets"] += 1
                    matched["in_catalogue"] += int(target_found[i])
        for fh in handles.values():
            fh.close()
        (tmp / ".all.jsonl").unlink()
        with (tmp / CATALOGUE_FILE).open("w") as fh:
            for item in catalogue:
                fh.write(item.model_dump_json() + "\n")
        report = {
            "source": source, "paths": [str(p) for p in paths], "records": dict(counts),
            "read": {p: dict(c) for p, c in read.items()},
            "duplicates_dropped": len(duplicates), "duplicates": duplicates[:200],
            "skipped": len(skipped), "skipped_reasons": skipped[:200],
            "target_match_rate": matched["in_catalogue"] / matched["targets"] if matched["targets"] else None,
            "catalogue_items": len(catalogue), "annotator": annotator,
        }
        if source == "pearl":
            report["pearl_filter"] = {"read": pearl_report.read, "kept": pearl_report.kept,
                                      "dropped": dict(pearl_report.dropped),
                                      "dropped_fraction": pearl_report.dropped_fraction,
                                      "empty_turns_removed": pearl_report.empty_turns_removed}
        (tmp / BUILD_FILE).write_text(json.dumps(report, indent=2) + "\n")
        if out.exists():
            old = out.with_name(out.name + ".old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_records(folder: str | Path, split: str | None = None) -> list[DialogueRecord]:
    """Records of a built folder (one split, or all). Bad lines name the file and line."""
    folder = Path(folder)
    files = [folder / f"{split}.jsonl"] if split else sorted(
        f for f in folder.glob("*.jsonl") if f.name != CATALOGUE_FILE)
    records = []
    for f in files:
        if not f.exists():
            raise DataFormatError(f, None, "<file>", f"no split {split!r} in {folder}")
        with f.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                try:
                    records.append(DialogueRecord.model_validate_json(line))
                except ValueError as exc:
                    message = str(exc)
                    err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ("<json>",), "msg": message}
                    raise DataFormatError(f, lineno, ".".join(map(str, err["loc"])), err["msg"]) from None
    return records


def read_catalogue(folder: str | Path) -> Catalogue:
    """The item table written by the build."""
    with (Path(folder) / CATALOGUE_FILE).open(encoding="utf-8") as fh:
        return Catalogue(Item.model_validate_json(line) for line in fh if line.strip())


def dataset_stats(folder: str | Path) -> dict:
    """Counts per split, mean turns, action mix per role, outcome rates, catalogue match rate, the
    items no catalogue item matched (distinct titles, the most named first), and the human
    verdicts per slice (accepted / rejected / did not say)."""
    stats: dict = {}
    for rec_split, recs in _by_split(read_records(folder)).items():
        actions: dict[str, Counter] = defaultdict(Counter)
        for r in recs:
            for t in r.turns:
                actions[t.role.value][t.action.value] += 1
        with_target = [r for r in recs if r.target is not None]
        stats[rec_split] = {
            "records": len(recs),
            "mean_turns": sum(len(r.turns) for r in recs) / len(recs),
            "actions": {role: dict(c.most_common()) for role, c in actions.items()},
            "accepted_rate": sum(r.outcome.accepted_item is not None for r in recs) / len(recs),
            "mean_rejected": sum(len(r.outcome.rejected_items) for r in recs) / len(recs),
            "with_target": len(with_target),
            "target_in_catalogue_rate": (sum(bool(r.meta.get("target_in_catalogue", True)) for r in with_target)
                                         / len(with_target)) if with_target else None,
            "provenance": dict(Counter(f"{k}={v}" for r in recs for k, v in r.provenance.items())),
            "items": _item_stats(recs),
            "decisions": _decision_stats(recs),
        }
    return stats


def _item_stats(recs: list[DialogueRecord]) -> dict:
    """Distinct items the records name, how many the catalogue has, and the unmatched titles."""
    refs = {ref.item_id: ref for r in recs for ref in r.items.values()}
    unmatched = Counter(ref.title for r in recs for ref in r.items.values() if not ref.in_catalogue)
    targets = Counter(r.target.title for r in recs if r.target is not None and not r.meta.get("target_in_catalogue", True))
    return {"distinct": len(refs), "in_catalogue": sum(ref.in_catalogue for ref in refs.values()),
            "unmatched": len({ref.item_id for ref in refs.values() if not ref.in_catalogue}),
            "unmatched_titles": [t for t, _ in unmatched.most_common(30)],
            "unmatched_targets": dict(targets.most_common())}


def _decision_stats(recs: list[DialogueRecord]) -> dict:
    """Human verdicts per slice: accepted, rejected, did not say; and those no recommender turn names."""
    out: dict = {}
    for r in recs:
        for d in r.decisions:
            c = out.setdefault(d.slice, {"accept": 0, "reject": 0, "did_not_say": 0})
            c["accept" if d.accept == 1 else "reject" if d.accept == 0 else "did_not_say"] += 1
    out["unplaced"] = sum(r.meta.get("decisions_unplaced", 0) for r in recs)
    return out


def _by_split(records: list[DialogueRecord]) -> dict[str, list[DialogueRecord]]:
    out: dict[str, list[DialogueRecord]] = defaultdict(list)
    for r in records:
        out[r.split].append(r)
    return dict(out)
