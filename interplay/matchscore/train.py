"""``interplay matchscore train``: the item encoder trained with BPR on MovieLens ratings.

Implicit feedback: a rating >= ``min_rating`` is a positive. Temporal split per user (with at
least five positives): the latest ``holdout`` share of its positives (at least one) is held out
for test, the share before it for validation; the rest train. Several held-out items per user
keep the figures steadier than leave-one-out on a data set of 600 users. The model is item-based (FISM-like, Kabbur et al. 2013): a user
is the mean of the L2-normalised vectors of the items it liked, and scores an item by cosine, so
training shapes exactly the item-to-item similarity MatchScore reads. BPR (Rendle et al., 2009)
with one uniformly sampled negative per positive (the positive itself left out of the user's
mean). The epoch with the best validation Recall@10 is kept; test Recall@10 / NDCG@10 (user
history: train + validation items) are reported next to a popularity ranking of the same held-out
items, so it is plain whether the encoder learned anything.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from interplay.catalogue import Catalogue
from interplay.matchscore.encoder import ITEM_VECTORS_FILE, ItemEncoder, item_text

BASE_CACHE = "text_embeddings.pt"


@dataclass
class MatchScoreTrainConfig:
    """Settings of an item-encoder training run (saved in the encoder's config.json)."""

    data_root: str
    out: str
    dim: int = 128
    hidden: int = 512
    epochs: int = 20
    batch_size: int = 2048
    lr: float = 2e-3
    weight_decay: float = 1e-6
    min_rating: float = 3.5
    holdout: float = 0.1
    seed: int = 0
    k: int = 10


@dataclass
class Interactions:
    """Positives per user split leave-last-out; item indices refer to ``item_ids``."""

    item_ids: list[str]
    train: list[list[int]]
    valid: list[list[int]]
    test: list[list[int]]


def load_interactions(root: str | Path, item_index: dict[str, int], min_rating: float,
                      holdout: float = 0.1) -> Interactions:
    """MovieLens ``ratings.csv`` -> temporally split positives (errors name file, line and field)."""
    from interplay.data.errors import DataFormatError
    from interplay.data.movielens import ML_SMALL, _rows

    path = Path(root) / ML_SMALL / "ratings.csv"
    by_user: dict[str, list[tuple[int, int]]] = {}
    for lineno, row in _rows(path, ("userId", "movieId", "rating", "timestamp")):
        try:
            rating, ts = float(row["rating"]), int(float(row["timestamp"]))
        except ValueError:
            field = "rating" if not _is_number(row["rating"]) else "timestamp"
            raise DataFormatError(path, lineno, field, f"not a number: {row[field]!r}") from None
        idx = item_index.get(f"ml:{row['movieId'].strip()}")
        if idx is not None and rating >= min_rating:
            by_user.setdefault(row["userId"].strip(), []).append((ts, idx))
    train, valid, test = [], [], []
    for user in sorted(by_user, key=lambda u: int(u) if u.isdigit() else u):
        items = [i for _, i in sorted(by_user[user])]
        n = max(1, round(holdout * len(items)))
        if len(items) >= 5:
            train.append(items[: -2 * n]), valid.append(items[-2 * n : -n]), test.append(items[-n:])
        else:
            train.append(items), valid.append([]), test.append([])
    return Interactions(list(item_index), train, valid, test)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def ranking_metrics(scores: torch.Tensor, data: Interactions, held: list[list[int]], k: int,
                    candidates: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@k (held-out items in the top k / min(k, held-out items)) and NDCG@k of each user's
    held-out items, averaged over users; the user's training positives are excluded from the
    ranking and ``candidates`` (a boolean mask over items) restricts it. ``scores``: users x items."""
    recall, ndcg, n = 0.0, 0.0, 0
    for u, targets in enumerate(held):
        if not targets:
            continue
        s = scores[u].clone()
        if candidates is not None:
            s[~candidates] = -math.inf
        s[list(data.train[u])] = -math.inf
        top = torch.topk(s, k).indices.tolist()
        relevant = set(targets)
        gains = [1 / math.log2(r + 2) for r, i in enumerate(top) if i in relevant]
        ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
        recall += len(gains) / min(k, len(relevant))
        ndcg += sum(gains) / ideal
        n += 1
    return {f"recall@{k}": recall / n if n else 0.0, f"ndcg@{k}": ndcg / n if n else 0.0, "users": n}


def popularity_scores(data: Interactions) -> torch.Tensor:
    counts = torch.zeros(len(data.item_ids))
    for items in data.train:
        for i in items:
            counts[i] += 1
    return counts.unsqueeze(0).expand(len(data.train), -1)


def _text_embeddings(catalogue: Catalogue, out: Path, progress) -> tuple[list[str], torch.Tensor, str]:
    """MiniLM embeddings of every catalogue item's text, cached in ``out`` (a rerun reuses them)."""
    from interplay.text_encoder import mean_pooled_embeddings, minilm_path

    items = sorted(catalogue, key=lambda it: it.item_id)
    ids, texts = [it.item_id for it in items], [item_text(it) for it in items]
    model = str(minilm_path())
    cache = out / BASE_CACHE
    if cache.exists():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved["item_ids"] == ids and saved["texts"] == texts and saved["model"] == model:
            return ids, saved["embeddings"], model
    emb = mean_pooled_embeddings(texts, model, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"item_ids": ids, "texts": texts, "model": model, "embeddings": emb}, cache)
    return ids, emb, model


def train_item_encoder(cfg: MatchScoreTrainConfig, progress: bool = True) -> dict:
    """Train, save the encoder with the vectors of every catalogue item, return the metrics."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from interplay.data.movielens import load_movielens_catalogue

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    out = Path(cfg.out)
    catalogue = load_movielens_catalogue(cfg.data_root)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not progress) as bar:
        enc_task = bar.add_task("encode items", total=len(catalogue), info="")
        ids, base, model_path = _text_embeddings(catalogue, out, lambda n: bar.advance(enc_task, n))
        bar.update(enc_task, completed=len(catalogue))
        index = {item_id: i for i, item_id in enumerate(ids)}
        data = load_interactions(cfg.data_root, index, cfg.min_rating, cfg.holdout)
        pairs = [(u, i) for u, items in enumerate(data.train) for i in items]
        if not pairs:
            raise ValueError(f"no positive rating >= {cfg.min_rating} in {cfg.data_root}")
        encoder = ItemEncoder(base.shape[1], cfg.dim, cfg.hidden)
        log_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        opt = torch.optim.Adam([*encoder.parameters(), log_scale], lr=cfg.lr, weight_decay=cfg.weight_decay)
        rated = sorted({i for items in data.train for i in items})  # items with any training positive
        # the ranking is over the items with a training positive (the rest of the catalogue has no
        # rating at all: keyword-catalogue films outside ml-latest-small)
        candidates = torch.zeros(len(ids), dtype=torch.bool)
        candidates[rated] = True
        pos_of = {item: j for j, item in enumerate(rated)}
        base_rated = base[rated]
        hist = _history_matrix([[pos_of[i] for i in items] for items in data.train], len(rated))
        counts = torch.tensor([len(items) for items in data.train], dtype=torch.float32)
        pairs = [(u, pos_of[i]) for u, i in pairs if counts[u] > 1]  # a user needs another item to be described by
        train_task = bar.add_task("BPR epochs", total=cfg.epochs, info="")
        best, best_state, history = -1.0, None, []
        for epoch in range(cfg.epochs):
            encoder.train()
            rng.shuffle(pairs)
            total = 0.0
            for start in range(0, len(pairs), cfg.batch_size):
                batch = pairs[start : start + cfg.batch_size]
                u = torch.tensor([p[0] for p in batch])
                pos = torch.tensor([p[1] for p in batch])
                neg = torch.randint(len(rated), (len(batch),))
                items = torch.nn.functional.normalize(encoder(base_rated), dim=-1)
                # the user is the mean of its other liked items (leave the positive itself out)
                users = (torch.sparse.mm(hist, items)[u] - items[pos]) / (counts[u] - 1).unsqueeze(-1)
                users = torch.nn.functional.normalize(users, dim=-1)
                scale = log_scale.exp()
                diff = scale * ((users * items[pos]).sum(-1) - (users * items[neg]).sum(-1))
                loss = -torch.nn.functional.logsigmoid(diff).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
            valid = ranking_metrics(_all_scores(encoder, base, data.train), data, data.valid, cfg.k,
                                    candidates=candidates)
            history.append({"epoch": epoch + 1, "bpr_loss": total / len(pairs), **valid})
            if valid[f"recall@{cfg.k}"] > best:
                best = valid[f"recall@{cfg.k}"]
                best_state = {k: v.clone() for k, v in encoder.state_dict().items()}
            bar.update(train_task, advance=1,
                       info=f"loss {total / len(pairs):.4f} valid R@{cfg.k} {valid[f'recall@{cfg.k}']:.4f}")
    encoder.load_state_dict(best_state)
    encoder.eval()
    with_valid = [t + v for t, v in zip(data.train, data.valid)]
    test_data = Interactions(data.item_ids, with_valid, [[] for _ in with_valid], data.test)
    metrics = {
        "test": ranking_metrics(_all_scores(encoder, base, with_valid), test_data, data.test, cfg.k,
                                candidates=candidates),
        "test_popularity": ranking_metrics(popularity_scores(test_data), test_data, data.test, cfg.k,
                                           candidates=candidates),
        "valid": ranking_metrics(_all_scores(encoder, base, data.train), data, data.valid, cfg.k,
                                 candidates=candidates),
        "valid_popularity": ranking_metrics(popularity_scores(data), data, data.valid, cfg.k, candidates=candidates),
        "candidates": int(candidates.sum()),
        "best_valid_epoch": max(history, key=lambda h: h[f"recall@{cfg.k}"])["epoch"],
        "items": len(ids), "users": len(data.train), "train_positives": len(pairs),
    }
    with torch.no_grad():
        vectors = torch.nn.functional.normalize(encoder(base), dim=-1)
    torch.save({"item_ids": ids, "vectors": vectors}, out / ITEM_VECTORS_FILE)
    encoder.save(out, text_encoder=model_path, training=asdict(cfg), metrics=metrics, history=history)
    return metrics


def _history_matrix(histories: list[list[int]], n_items: int) -> torch.Tensor:
    """Sparse users x items matrix with a 1 for each liked item."""
    rows = [u for u, items in enumerate(histories) for _ in items]
    cols = [i for items in histories for i in items]
    return torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.ones(len(cols)), (len(histories), n_items),
                                   check_invariants=False).coalesce()


def _all_scores(encoder: ItemEncoder, base: torch.Tensor, histories: list[list[int]]) -> torch.Tensor:
    """Cosine of each user (the mean of its liked items' vectors) with every item's vector."""
    with torch.no_grad():
        items = torch.nn.functional.normalize(encoder(base), dim=-1)
        users = torch.sparse.mm(_history_matrix(histories, len(base)), items)
        return torch.nn.functional.normalize(users, dim=-1) @ items.T


def read_metrics(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())["metrics"]
