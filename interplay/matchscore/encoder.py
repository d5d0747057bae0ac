"""The item encoder: frozen MiniLM text embedding of an item -> a trained projection."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from interplay.catalogue import Item

ENCODER_FILE = "encoder.pt"
CONFIG_FILE = "config.json"
ITEM_VECTORS_FILE = "item_vectors.pt"


def item_text(item: Item) -> str:
    """The text an item is encoded from: its title, then its genres, tags and keywords."""
    return f"{item.title}. {', '.join(item.attributes)}" if item.attributes else item.title


class ItemEncoder(nn.Module):
    """Projection of the (frozen, L2-normalised) MiniLM embedding of :func:`item_text`.

    The text encoder stays frozen so its embeddings of the whole catalogue are computed once on a
    CPU; only this two-layer projection (and the BPR user vectors) learn from the ratings.
    """

    def __init__(self, in_dim: int = 384, dim: int = 128, hidden: int = 512):
        super().__init__()
        self.in_dim, self.dim, self.hidden = in_dim, dim, hidden
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, base: torch.Tensor) -> torch.Tensor:
        return self.net(base)

    def save(self, folder: str | Path, **config) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), folder / ENCODER_FILE)
        cfg = {"in_dim": self.in_dim, "dim": self.dim, "hidden": self.hidden, **config}
        (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, default=str) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> tuple["ItemEncoder", dict]:
        folder = Path(folder)
        if not (folder / ENCODER_FILE).exists():
            raise FileNotFoundError(f"{folder} holds no item encoder ({ENCODER_FILE}); "
                                    "build one with 'interplay matchscore train'")
        cfg = json.loads((folder / CONFIG_FILE).read_text())
        enc = cls(cfg["in_dim"], cfg["dim"], cfg["hidden"])
        enc.load_state_dict(torch.load(folder / ENCODER_FILE, map_location="cpu", weights_only=True))
        return enc.eval(), cfg
