"""Precision and recall of the catalogue's title matcher on hand-labelled ReDial titles.

    python benchmarks/title_matching.py                      # default matcher on the gold file
    python benchmarks/title_matching.py --method find        # any Catalogue method: resolve, match, find
    python benchmarks/title_matching.py --candidates         # the sample with broad candidates, to (re)label

Gold: ``tests/fixtures/title_matches_gold.tsv`` (``redial_title``, ``movielens_id``, ``movielens_title``,
``sampled``, ``note``). ``movielens_id`` is the MovieLens item that is the same film (``ml:<movieId>``),
empty when the catalogue of ``load_movielens_catalogue`` does not have that film, and ``?`` when the
labeller could not tell (left out of the metrics, counted). Labels were given by hand, by reading the
candidates of ``--candidates`` (no matcher's output was used).

The sample (``sample_titles``), reproducible: the distinct ``movieMentions`` titles of
``redial/test_data.jsonl`` (whitespace collapsed and stripped, empty ones dropped), minus the known-hard
cases ``HARD``, sorted, then ``random.Random(SEED).sample(..., 150)`` with ``SEED = 20240``; the ``HARD``
titles that occur anywhere in ``redial*/*.jsonl`` are appended (``sampled`` = ``hard``, else ``random``).

Metrics, over the labelled rows (gold not ``?``):
- precision: correct ids / titles the matcher resolved (to anything);
- recall: correct ids / titles whose gold says the catalogue has the film;
- wrong: resolved to an item other than the gold one (also when the gold is "not in catalogue");
- misses: gold has the film, the matcher resolved nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests" / "fixtures" / "title_matches_gold.tsv"
COLUMNS = ("redial_title", "movielens_id", "movielens_title", "sampled", "note")
SEED = 20240
N_RANDOM = 150
HARD = ("Black Panther (2018)", "Avengers: Infinity War (2018)", "The Big Lebowski", "Justice (1993)", "Game (2003)")
UNSURE = "?"


def _clean(title: str) -> str:
    return re.sub(r"\s+", " ", title).strip()


def _mentions(path: Path) -> set[str]:
    titles = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                for title in (json.loads(line).get("movieMentions") or {}).values():
                    if title and _clean(title):
                        titles.add(_clean(title))
    return titles


def sample_titles(data_root: str | Path, n: int = N_RANDOM, seed: int = SEED) -> list[tuple[str, str]]:
    """(title, ``random``/``hard``) of the gold sample, in gold-file order (see the module doc)."""
    root = Path(data_root)
    pool = sorted(_mentions(root / "redial" / "test_data.jsonl") - set(HARD))
    everywhere: set[str] = set()
    for path in sorted(root.glob("redial*/*.jsonl")):
        everywhere |= _mentions(path)
    return [(t, "random") for t in random.Random(seed).sample(pool, n)] + [(t, "hard") for t in HARD if t in everywhere]


def load_gold(path: str | Path = GOLD) -> list[dict[str, str]]:
    with Path(path).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows and tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: expected columns {COLUMNS}, got {tuple(rows[0])}")
    return rows


def default_method(catalogue) -> str:
    return "resolve" if hasattr(catalogue, "resolve") else "match"


def _item_id(result) -> str | None:
    """The item id of whatever a matcher returned: an Item, an id string, or a tuple led by either."""
    if isinstance(result, tuple):
        result = result[0] if result else None
    if result is None:
        return None
    return result if isinstance(result, str) else result.item_id


def measure(catalogue, gold_rows: list[dict[str, str]], method: str | Callable | None = None) -> dict:
    """Run ``method`` (a Catalogue method name, a callable taking a title, or None for the default)
    on every gold title; precision, recall, the wrong matches and the misses (see the module doc)."""
    if method is None:
        method = default_method(catalogue)
    if isinstance(method, str):
        name, fn = method, getattr(catalogue, method)
    else:
        name = getattr(method, "__name__", repr(method))
        # an unbound Catalogue method (``Catalogue.match``) is bound to this catalogue
        fn = getattr(catalogue, name) if getattr(type(catalogue), name, None) is method else method
    wrong, misses, unsure = [], [], []
    resolved = correct = in_catalogue = labelled = 0
    for row in gold_rows:
        title, gold = row["redial_title"], row["movielens_id"].strip()
        if gold == UNSURE:
            unsure.append(title)
            continue
        labelled += 1
        got = _item_id(fn(title))
        in_catalogue += bool(gold)
        if got is None:
            if gold:
                misses.append({"title": title, "gold": gold, "gold_title": row["movielens_title"]})
            continue
        resolved += 1
        if got == gold:
            correct += 1
        else:
            wrong.append({"title": title, "got": got, "got_title": _title(catalogue, got),
                          "gold": gold or None, "gold_title": row["movielens_title"]})
    return {
        "method": name, "n": len(gold_rows), "labelled": labelled, "unsure": len(unsure),
        "in_catalogue": in_catalogue, "not_in_catalogue": labelled - in_catalogue,
        "resolved": resolved, "correct": correct,
        "precision": correct / resolved if resolved else 1.0,
        "recall": correct / in_catalogue if in_catalogue else 1.0,
        "wrong": wrong, "misses": misses, "unsure_titles": unsure,
    }


def _title(catalogue, item_id: str) -> str:
    try:
        return catalogue[item_id].title
    except KeyError:
        return ""


def print_candidates(catalogue, titles: list[tuple[str, str]], k: int = 15) -> None:
    """A broad search independent of the matcher, for labelling: the top ``k`` catalogue names by
    RapidFuzz token_set_ratio, partial_ratio and ratio, plus every item whose normalised name equals
    or contains the normalised name."""
    from rapidfuzz import fuzz, process

    from interplay.catalogue import normalize_title, split_year

    items = list(catalogue)
    names = [normalize_title(split_year(it.title)[0], keep_year=False) for it in items]
    for title, sampled in titles:
        name, year = split_year(title)
        key = normalize_title(name, keep_year=False)
        found: dict[int, float] = {}
        for scorer in (fuzz.token_set_ratio, fuzz.partial_ratio, fuzz.ratio):
            for _, score, i in process.extract(key, names, scorer=scorer, limit=k):
                found[i] = max(found.get(i, 0), score)
        for i, it in enumerate(items):
            if key and (f" {key} " in f" {names[i]} " or key in normalize_title(it.title, keep_year=False)):
                found.setdefault(i, 100)

        def rank(i: int) -> float:
            y = split_year(items[i].title)[1]
            return -found[i] + (0 if year is None or y is None else 3 * min(abs(y - year), 5))

        print(f"### {title}  [{sampled}]")
        for i in sorted(found, key=rank)[:25]:
            print(f"   {items[i].item_id:>12}  {items[i].title}")


def write_results(catalogue, gold_rows: list[dict[str, str]], path: Path) -> None:
    """The docs result file of the matcher (``resolve``) and the exact lookup (``find``) on the gold sample."""
    import datetime as dt

    from scipy.stats import binomtest

    from interplay.results_docs import Column, ResultTable

    def fig(k: int, n: int) -> dict:
        ci = binomtest(k, n).proportion_ci(method="wilson") if n else None
        return {"value": k / n if n else 1.0, "ci95": [ci.low, ci.high] if ci else None, "n": n}

    rows = []
    for method in ("resolve", "find"):
        r = measure(catalogue, gold_rows, method)
        rows.append({"matcher": f"Catalogue.{method}", "precision": fig(r["correct"], r["resolved"]),
                     "recall": fig(r["correct"], r["in_catalogue"]), "wrong": len(r["wrong"]),
                     "misses": len(r["misses"]), "checkpoint": "-", "threshold": None})
    table = ResultTable(
        title="Title matcher on the hand-labelled ReDial -> MovieLens sample", measured=dt.date.today(),
        command="python benchmarks/title_matching.py --results-json docs/results/title-matching.json",
        data="../shared/data (ReDial test movieMentions, MovieLens catalogue)", split="test",
        source="tests/fixtures/title_matches_gold.tsv",
        columns=[Column(key="matcher", header="matcher"),
                 Column(key="precision", header="precision (resolved)", format=".3f", show_n=True),
                 Column(key="recall", header="recall (in catalogue)", format=".3f", show_n=True),
                 Column(key="wrong", header="wrong matches", format="d"), Column(key="misses", header="misses", format="d")],
        rows=rows,
        notes=[f"{r['labelled']} titles labelled by hand ({r['in_catalogue']} in the catalogue, "
               f"{r['not_in_catalogue']} not), {r['unsure']} left out as unsure; intervals: Wilson 95%."])
    path.write_text(table.model_dump_json(indent=1) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--gold", default=str(GOLD))
    ap.add_argument("--method", help="Catalogue method to measure (default: resolve if it exists, else match)")
    ap.add_argument("--candidates", action="store_true", help="print the sample with broad candidates and exit")
    ap.add_argument("--json", action="store_true", help="print the result dict as JSON")
    ap.add_argument("--results-json", help="write the docs result file (interplay.results_docs) of resolve and find here")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from interplay.data.movielens import load_movielens_catalogue

    catalogue = load_movielens_catalogue(args.data_root)
    if args.candidates:
        print_candidates(catalogue, sample_titles(args.data_root))
        return
    if args.results_json:
        write_results(catalogue, load_gold(args.gold), Path(args.results_json))
        return
    r = measure(catalogue, load_gold(args.gold), args.method)
    if args.json:
        print(json.dumps(r, indent=1, ensure_ascii=False))
        return
    print(f"Catalogue.{r['method']} on {r['n']} gold titles ({len(catalogue)} items): {r['labelled']} labelled "
          f"({r['in_catalogue']} in catalogue, {r['not_in_catalogue']} not), {r['unsure']} '?' excluded")
    print(f"precision {r['precision']:.3f} ({r['correct']}/{r['resolved']} resolved)   "
          f"recall {r['recall']:.3f} ({r['correct']}/{r['in_catalogue']})")
    print(f"wrong matches: {len(r['wrong'])}")
    for w in r["wrong"]:
        gold = w["gold"] or "not in catalogue"
        print(f"  {w['title']!r} -> {w['got']} {w['got_title']!r}; gold {gold} {w['gold_title']!r}")
    print(f"misses: {len(r['misses'])}")
    for m in r["misses"]:
        print(f"  {m['title']!r}; gold {m['gold']} {m['gold_title']!r}")


if __name__ == "__main__":
    main()
