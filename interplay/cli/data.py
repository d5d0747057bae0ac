"""``interplay data``: build and inspect dialogue record sets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from interplay.cli.app import app, bad_input, console
from interplay.data.errors import DataFormatError

data_app = typer.Typer(no_args_is_help=True, help="Build and inspect dialogue record sets.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build(
    source: str = typer.Option(..., help="redial | inspired | iard | pearl | episodes (the episode log of "
                               "an 'interplay simulate' run: simulated dialogues as training data), a source "
                               "registered with interplay.data.sources, or module.path:loader"),
    path: list[str] = typer.Option(..., help="the source's file or folder ('hub' for PEARL from the Hugging Face "
                                   "hub); repeat to combine several: duplicate record ids are kept once"),
    out: Path = typer.Option(..., help="output folder (replaced only when the build succeeds)"),
    catalogue: Optional[Path] = typer.Option(None, help="folder with movielens-small/ and movielens-keywords/ "
                                             "(default: $INTERPLAY_DATA or ../shared/data)"),
    skip_invalid: bool = typer.Option(False, help="skip malformed records (counted and reported) instead of failing"),
    field_map: Optional[str] = typer.Option(None, help="PEARL only: KEY=FIELD,... overriding the expected field names"),
    annotator: str = typer.Option("rule", help="labels turns without gold acts: rule | llm | llm:MODEL"),
    progress: bool = typer.Option(True),
) -> None:
    """Convert a source's dialogues into unified records, one JSONL per split."""
    from interplay.data.build import build_dataset

    with bad_input(DataFormatError, ValueError, OSError):
        fmap = dict(_key_value(kv) for kv in field_map.split(",")) if field_map else None
        report = build_dataset(source, path, out, catalogue, skip_invalid=skip_invalid, progress=progress,
                               field_map=fmap, annotator=annotator)
    if len(path) > 1:
        for src, per_split in report["read"].items():
            console.print(f"read {per_split} from {src}", markup=False)
    console.print(f"duplicates dropped: {report['duplicates_dropped']} (record ids read more than once; "
                  "the first path's copy is kept, a test/valid copy before a train copy)", markup=False)
    console.print(f"records per split: {report['records']}; skipped: {report['skipped']}; "
                  f"target match rate: {report['target_match_rate']}")
    for reason in report["skipped_reasons"][:10]:
        console.print(f"  skipped: {reason}", markup=False)
    if "pearl_filter" in report:
        console.print(f"PEARL filter: {report['pearl_filter']}", markup=False)
    console.print(f"wrote {out}")


def _key_value(text: str) -> tuple[str, str]:
    """``"KEY=FIELD"`` -> ``("KEY", "FIELD")``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"--field-map: expected KEY=FIELD, got {text!r}")
    return key.strip(), value.strip()


@data_app.command("stats")
def data_stats(
    folder: Path = typer.Argument(..., help="a folder built by 'interplay data build'"),
    json_out: bool = typer.Option(False, "--json", help="also print every figure as JSON"),
    results_json: Optional[Path] = typer.Option(None, help="also write the human verdicts per slice as a docs "
                                                "result file (docs/results/NAME.json)"),
    split: list[str] = typer.Option([], help="with --results-json: the splits to put in it (repeat; default all)"),
) -> None:
    """Counts per split, turns, action mix per role, outcome rates, catalogue match rate, unmatched
    items and the human verdicts per slice."""
    from interplay.data.build import dataset_stats

    with bad_input(DataFormatError, OSError):
        stats = dataset_stats(folder)
    if results_json is not None:
        from interplay.data.verdict_results import verdict_table

        cmd = f"interplay data stats {folder}" + "".join(f" --split {s}" for s in split) + f" --results-json {results_json}"
        with bad_input(ValueError, OSError):
            table = verdict_table(folder, stats, cmd, splits=split or None)
            results_json.write_text(table.model_dump_json(indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {results_json}", markup=False)
    table = Table(title=f"Records in {folder}")
    for col in ("split", "records", "mean turns", "accepted", "rejected / record", "target in catalogue"):
        table.add_column(col, justify="right")
    for split, s in stats.items():
        rate = s["target_in_catalogue_rate"]
        table.add_row(split, str(s["records"]), f"{s['mean_turns']:.1f}", f"{s['accepted_rate']:.2f}",
                      f"{s['mean_rejected']:.2f}", "-" if rate is None else f"{rate:.3f}")
    console.print(table)
    mix = Table(title="Actions per role (share of the role's turns)")
    mix.add_column("role / action")
    for split in stats:
        mix.add_column(split, justify="right")
    for role in ("user", "recommender"):
        for action in sorted({a for s in stats.values() for a in s["actions"].get(role, {})}):
            cells = []
            for s in stats.values():
                counts = s["actions"].get(role, {})
                total = sum(counts.values()) or 1
                cells.append(f"{counts.get(action, 0) / total:.2f}")
            mix.add_row(f"{role} / {action}", *cells)
    console.print(mix)
    items = Table(title="Items named (resolved once at build time) and human verdicts per slice")
    for col in ("split", "items", "in catalogue", "unmatched", "unmatched targets", "verdicts: slice acc/rej/did not say"):
        items.add_column(col, justify="right" if col != "verdicts: slice acc/rej/did not say" else "left")
    for split, s in stats.items():
        i, d = s["items"], s["decisions"]
        verdicts = "; ".join(f"{k} {v['accept']}/{v['reject']}/{v['did_not_say']}" for k, v in d.items() if k != "unplaced")
        items.add_row(split, str(i["distinct"]), str(i["in_catalogue"]), str(i["unmatched"]),
                      str(sum(i["unmatched_targets"].values())), verdicts + f"; unplaced {d['unplaced']}")
    console.print(items)
    for split, s in stats.items():
        if s["items"]["unmatched_titles"]:
            console.print(f"[bold]{split}[/bold] unmatched, most named first: " + ", ".join(s["items"]["unmatched_titles"][:12]))
    console.print_json(data=stats) if json_out else None
