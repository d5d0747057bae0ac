"""The knowledge graph UniCRS encodes: catalogue movies and their attributes from MovieLens.

Entities are the catalogue's movies, the MovieLens genres, and the user tags / plot keywords that
at least ``min_attribute_movies`` movies share (rarer ones connect nothing). Relations: movie ->
genre, movie -> tag/keyword, and their inverses (R-GCN adds a self-loop through its root weight).
MovieLens holds no people (cast, directors), so the graph has none.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interplay.catalogue import Catalogue
from interplay.data.movielens import GENRES

RELATIONS = ("has_genre", "has_attribute", "genre_of", "attribute_of")
KG_FILE = "kg.json"


@dataclass
class KnowledgeGraph:
    """Entity names (movies by item id, attributes by their text), typed edges, item entity ids."""

    entities: list[str]
    kinds: list[str]  # "item" | "genre" | "attribute", per entity
    edges: list[tuple[int, int, int]]  # (head, tail, relation index into RELATIONS)
    index: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.index = {name: i for i, name in enumerate(self.entities)}

    @property
    def item_ids(self) -> list[int]:
        """Entity ids of the movies (the candidates a recommendation ranks)."""
        return [i for i, k in enumerate(self.kinds) if k == "item"]

    def edge_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index`` [2, E] (source -> target, as torch-geometric expects) and ``edge_type`` [E]."""
        if not self.edges:
            return torch.zeros((2, 0), dtype=torch.long), torch.zeros(0, dtype=torch.long)
        t = torch.tensor(self.edges, dtype=torch.long)
        return t[:, :2].T.contiguous(), t[:, 2].contiguous()

    def stats(self) -> dict:
        """Entity counts by kind, edge counts by relation."""
        rel = Counter(RELATIONS[r] for _, _, r in self.edges)
        return {"entities": len(self.entities), **{f"{k}s": v for k, v in Counter(self.kinds).items()},
                "edges": len(self.edges), "edges_by_relation": dict(rel)}

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / KG_FILE).write_text(json.dumps({"entities": self.entities, "kinds": self.kinds,
                                                        "edges": self.edges, "relations": RELATIONS}))

    @classmethod
    def load(cls, folder: str | Path) -> "KnowledgeGraph":
        d = json.loads((Path(folder) / KG_FILE).read_text())
        return cls(d["entities"], d["kinds"], [tuple(e) for e in d["edges"]])


def build_kg(catalogue: Catalogue, min_attribute_movies: int = 3) -> KnowledgeGraph:
    """The graph of ``catalogue`` (e.g. a data folder's ``catalogue.jsonl``, built from MovieLens
    movies, genres, tags and the keyword catalogue)."""
    counts = Counter(a for item in catalogue for a in set(item.attributes) if a not in GENRES)
    entities, kinds = [], []
    for item in catalogue:
        entities.append(item.item_id)
        kinds.append("item")
    for g in sorted(GENRES):
        entities.append(g)
        kinds.append("genre")
    for a in sorted(a for a, n in counts.items() if n >= min_attribute_movies):
        entities.append(a)
        kinds.append("attribute")
    index = {name: i for i, name in enumerate(entities)}
    edges = []
    for item in catalogue:
        head = index[item.item_id]
        for a in dict.fromkeys(item.attributes):
            tail = index.get(a)
            if tail is None or kinds[tail] == "item":
                continue
            forward = 0 if kinds[tail] == "genre" else 1
            edges.append((head, tail, forward))
            edges.append((tail, head, forward + 2))
    return KnowledgeGraph(entities, kinds, edges)
