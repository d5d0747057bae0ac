"""Precision and recall of the catalogue's title matcher against hand-labelled ReDial -> MovieLens pairs
(tests/fixtures/title_matches_gold.tsv; the sample and the metrics are defined in
benchmarks/title_matching.py)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import ROOT

from interplay.catalogue import Catalogue

pytestmark = pytest.mark.data

MIN_PRECISION = 0.97
# Catalogue.match (HEAD before the rewrite) measured 132/134 = 0.985; two misses more fail
MIN_RECALL = 0.975
KNOWN_WRONG = {"Justice (1993)": "ml:510",  # Poetic Justice (1993)
               "Game (2003)": "ml:6566",  # Spy Kids 3-D: Game Over (2003)
               "Punch (2011)": "ml:85510"}  # Sucker Punch (2011)


def _bench():
    spec = importlib.util.spec_from_file_location("title_matching_bench", ROOT / "benchmarks" / "title_matching.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def catalogue(shared_data):
    from interplay.data.movielens import load_movielens_catalogue

    return load_movielens_catalogue(shared_data)


@pytest.fixture(scope="module")
def gold(bench):
    return bench.load_gold()


def _matcher():
    return getattr(Catalogue, "resolve", None) or Catalogue.match


def test_gold_is_the_documented_sample_and_names_real_items(bench, gold, catalogue, shared_data):
    assert [(r["redial_title"], r["sampled"]) for r in gold] == bench.sample_titles(shared_data)
    assert len(gold) >= 150
    for r in gold:
        if r["movielens_id"] not in ("", bench.UNSURE):
            assert catalogue[r["movielens_id"]].title == r["movielens_title"], r


def test_matcher_precision_recall_and_no_known_wrong_matches(bench, gold, catalogue):
    matcher = _matcher()
    r = bench.measure(catalogue, gold, matcher)
    summary = (f"{matcher.__name__}: precision {r['correct']}/{r['resolved']}, "
               f"recall {r['correct']}/{r['in_catalogue']}; wrong {r['wrong']}; misses {[m['title'] for m in r['misses']]}")
    for title, bad in KNOWN_WRONG.items():
        got = matcher(catalogue, title)
        assert bench._item_id(got) != bad, f"{title!r} -> {bad}"
    assert r["precision"] >= MIN_PRECISION, summary
    assert r["recall"] >= MIN_RECALL, summary
