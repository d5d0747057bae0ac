"""``interplay data build``: a source's records, validated, written per split as JSONL.

Output folder: ``{split}.jsonl`` (one :class:`DialogueRecord` per line, loadable with HF
``datasets.load_dataset("json", ...)``), ``catalogue.jsonl`` (the item table) and ``build.json``
(counts, skipped records with reasons, target match rate). Everything is written to a temporary
folder first and moved into place at the end, so a failed build leaves the old folder untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from interplay.catalogue import Catalogue, Item
from interplay.data.annotate import make_annotator
from interplay.data.errors import DataFormatError
from interplay.data.movielens import load_movielens_catalogue
from interplay.data.schema import DialogueRecord

SOURCES = ("redial", "inspired", "iard", "pearl")
CATALOGUE_FILE = "catalogue.jsonl"
BUILD_FILE = "build.json"


def default_data_root() -> Path:
    """``$INTERPLAY_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("INTERPLAY_DATA", "../shared/data"))


def iter_records(source: str, path: str | Path, catalogue: Catalogue, on_error=None, pearl_report=None,
                 field_map: dict | None = None, annotator=None):
    """Records of one source."""
    if source == "redial":
        from interplay.data.redial import load_redial

        return load_redial(path, catalogue, on_error=on_error, annotator=annotator)
    if source == "inspired":
        from interplay.data.inspired import load_inspired

        return load_inspired(path, catalogue, on_error=on_error, annotator=annotator)
    if source == "iard":
        from interplay.data.iard import load_iard

        return load_iard(path, catalogue, on_error=on_error, annotator=annotator)
    if source == "pearl":
        from interplay.data.pearl import load_pearl

        return load_pearl(path, catalogue, field_map=field_map, on_error=on_error, report=pearl_report,
                          annotator=annotator)
    raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")


def build_dataset(source: str, path: str | Path, out: str | Path, catalogue_root: str | Path | None = None,
                  skip_invalid: bool = False, progress: bool = True, field_map: dict | None = None,
                  annotator: str = "rule") -> dict:
    """Build ``out`` from a source; return the build report (also in ``out/build.json``)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from interplay.data.pearl import PearlReport

    catalogue = load_movielens_catalogue(catalogue_root or default_data_root())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    skipped: list[str] = []
    pearl_report = PearlReport()
    counts: Counter = Counter()
    matched: Counter = Counter()
    try:
        handles: dict[str, object] = {}
        on_error = (lambda err: skipped.append(str(err))) if skip_invalid else None
        with Progress(SpinnerColumn(), TextColumn("[bold]build {task.fields[source]}"),
                      TextColumn("{task.completed} records"), TimeElapsedColumn(), disable=not progress) as bar:
            task = bar.add_task("build", total=None, source=source)
            labeller = make_annotator(annotator)
            for rec in iter_records(source, path, catalogue, on_error, pearl_report, field_map, labeller):
                fh = handles.get(rec.split) or handles.setdefault(rec.split, (tmp / f"{rec.split}.jsonl").open("w"))
                fh.write(rec.model_dump_json() + "\n")
                counts[rec.split] += 1
                if rec.target is not None:
                    matched["targets"] += 1
                    matched["in_catalogue"] += int(rec.meta.get("target_in_catalogue", True))
                bar.update(task, advance=1)
        for fh in handles.values():
            fh.close()
        with (tmp / CATALOGUE_FILE).open("w") as fh:
            for item in catalogue:
                fh.write(item.model_dump_json() + "\n")
        report = {
            "source": source, "path": str(path), "records": dict(counts), "skipped": len(skipped),
            "skipped_reasons": skipped[:200],
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
    """Counts per split, mean turns, action mix per role, outcome rates, catalogue match rate."""
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
        }
    return stats


def _by_split(records: list[DialogueRecord]) -> dict[str, list[DialogueRecord]]:
    out: dict[str, list[DialogueRecord]] = defaultdict(list)
    for r in records:
        out[r.split].append(r)
    return dict(out)
