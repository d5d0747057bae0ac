"""The MatchScore item encoder: data split, ranking metrics by hand, scorer properties."""

from __future__ import annotations

import json
import math

import pytest
import torch

from interplay.catalogue import Catalogue, Item
from interplay.data.errors import DataFormatError
from interplay.matchscore.encoder import ITEM_VECTORS_FILE
from interplay.matchscore.train import Interactions, load_interactions, popularity_scores, ranking_metrics


def _ratings(tmp_path, text: str):
    (tmp_path / "movielens-small").mkdir(exist_ok=True)
    (tmp_path / "movielens-small" / "ratings.csv").write_text(text)
    return tmp_path


def test_temporal_split(tmp_path):
    root = _ratings(tmp_path, "userId,movieId,rating,timestamp\n"
                              "1,10,5,300\n1,11,4,100\n1,12,2,50\n1,13,4.5,200\n1,14,3.5,400\n1,15,4,500\n1,16,5,600\n"
                              "2,10,4,10\n2,11,5,20\n")
    index = {f"ml:{m}": i for i, m in enumerate([10, 11, 12, 13, 14, 15, 16])}
    ix = lambda *ms: [index[f"ml:{m}"] for m in ms]  # noqa: E731
    # user 1 positives by time: 11, 13, 10, 14, 15, 16 (rating 2 is not a positive)
    data = load_interactions(root, index, min_rating=3.5, holdout=0.1)  # one item each
    assert (data.train[0], data.valid[0], data.test[0]) == (ix(11, 13, 10, 14), ix(15), ix(16))
    data = load_interactions(root, index, min_rating=3.5, holdout=0.34)  # two items each
    assert (data.train[0], data.valid[0], data.test[0]) == (ix(11, 13), ix(10, 14), ix(15, 16))
    assert data.train[1] == ix(10, 11) and data.valid[1] == [] and data.test[1] == []  # too few to hold out


def test_bad_rating_names_file_line_field(tmp_path):
    root = _ratings(tmp_path, "userId,movieId,rating,timestamp\n1,10,5,300\n1,11,good,100\n")
    with pytest.raises(DataFormatError) as err:
        load_interactions(root, {"ml:10": 0, "ml:11": 1}, 3.5)
    assert "ratings.csv" in str(err.value) and ":3" in str(err.value) and "rating" in str(err.value)


def test_ranking_metrics_by_hand():
    data = Interactions(item_ids=list("abcde"), train=[[0], [1]], valid=[[], []], test=[[3, 4], [2]])
    scores = torch.tensor([[9.0, 1.0, 5.0, 4.0, 0.0],    # item 0 seen -> ranking 2, 3, 1, 4
                           [0.0, 9.0, 1.0, 2.0, 3.0]])   # item 1 seen -> ranking 4, 3, 2, 0
    m2 = ranking_metrics(scores, data, data.test, k=2)
    # user 0: 3 at rank 2 of its 2 held-out items -> recall 1/2; user 1: item 2 not in the top 2
    assert m2["recall@2"] == pytest.approx(0.25)
    assert m2["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)
    m3 = ranking_metrics(scores, data, data.test, k=3)
    # user 1: item 2 at rank 3 -> recall 1, ndcg 1/log2(4) = 0.5; user 0 adds item 1 only (a miss)
    assert m3["recall@3"] == pytest.approx((0.5 + 1) / 2) and m3["users"] == 2
    assert m3["ndcg@3"] == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3)) + 0.5) / 2)
    only = torch.tensor([True, True, True, False, True])  # item 3 not a candidate
    assert ranking_metrics(scores, data, [[3], []], k=4, candidates=only)["recall@4"] == 0.0
    assert popularity_scores(data)[0].tolist() == [1, 1, 0, 0, 0]


def test_encoder_trains_and_scores(tiny_encoder, movielens_slice):
    from interplay.data.movielens import load_movielens_catalogue
    from interplay.matchscore.scorer import MatchScorer

    cfg = json.loads((tiny_encoder / "config.json").read_text())
    m = cfg["metrics"]
    assert m["items"] == 120 and m["test_popularity"]["users"] == m["test"]["users"]
    # test Recall@10 and NDCG@10 worked out from the saved item vectors: a user is the sum of its
    # train and valid positives' vectors; it ranks the items with a training positive, its own left out
    saved = torch.load(tiny_encoder / ITEM_VECTORS_FILE, weights_only=True)
    data = load_interactions(movielens_slice, {item_id: i for i, item_id in enumerate(saved["item_ids"])},
                             cfg["training"]["min_rating"], cfg["training"]["holdout"])
    rated = {i for items in data.train for i in items}
    recall, ndcg = [], []
    for train, valid, test in zip(data.train, data.valid, data.test):
        if not test:
            continue
        seen = set(train + valid)
        scores = (saved["vectors"] @ saved["vectors"][list(seen)].sum(0)).tolist()
        top = sorted(rated - seen, key=lambda i: -scores[i])[:10]
        recall.append(len(set(top) & set(test)) / min(10, len(test)))
        ndcg.append(sum(1 / math.log2(r + 2) for r, i in enumerate(top) if i in test)
                    / sum(1 / math.log2(r + 2) for r in range(min(10, len(test)))))
    assert m["test"]["users"] == len(recall) > 20
    assert m["test"]["recall@10"] == pytest.approx(sum(recall) / len(recall), abs=1e-9)
    assert m["test"]["ndcg@10"] == pytest.approx(sum(ndcg) / len(ndcg), abs=1e-9)
    assert len(cfg["history"]) == 3 and cfg["history"][-1]["bpr_loss"] < cfg["history"][0]["bpr_loss"]
    catalogue = load_movielens_catalogue(movielens_slice)
    scorer = MatchScorer(tiny_encoder, catalogue)
    a, b = list(catalogue)[:2]
    assert scorer.score(a.title, a.title).score == pytest.approx(1.0, abs=1e-5)
    assert scorer.score(b.title, a.title).score < 0.9999 and scorer.score(b.title, a.title).matched
    miss = scorer.score("Zzyzx Nonexistent Picture (2099)", a.title)
    assert (miss.score, miss.matched) == (0.0, False)
    # a ground truth outside the catalogue has no score (left out of the mean and counted), never an error
    assert scorer.score(a.title, "Zzyzx Nonexistent Picture (2099)").score is None
    assert scorer.score(b.title, "a title that differs", target_id=a.item_id).score == scorer.score(b.title, a.title).score
    # an item outside the training catalogue is encoded from its text on first use
    other = Catalogue([*catalogue, Item(item_id="x:1", title="Made Up Movie (2020)", attributes=("comedy",))])
    s = MatchScorer(tiny_encoder, other).score("Made Up Movie (2020)", "Made Up Movie (2020)")
    assert s.matched and s.score == pytest.approx(1.0, abs=1e-5)
