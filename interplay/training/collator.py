"""The role-mask collator for TRL's SFTTrainer: padded or padding-free batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interplay.protocol import Role
from interplay.training.tokenize import ROLE_ID


@dataclass
class RoleMaskCollator:
    """Labels = input ids on the tokens trained for ``role``, -100 elsewhere.

    ``padding_free``: the batch is one row, sequences concatenated, ``position_ids`` restarting at
    0 for each (transformers then keeps attention within each sequence); no padding is computed.
    Otherwise rows are right-padded with ``pad_token_id`` and an attention mask; pad positions are
    -100 by the mask, never by comparing ids (pad == eos would erase trained end-of-turn tokens).
    """

    role: Role
    pad_token_id: int
    padding_free: bool = True
    #: with ``action_weight != 1``: each labelled token whose id is in ``action_ids`` (the action
    #: tags) weighs ``action_weight`` in the loss, others 1 (``loss_weights`` in the batch)
    action_ids: frozenset[int] = frozenset()
    action_weight: float = 1.0

    def weights_for(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-token loss weights of a label tensor (0 where unlabelled)."""
        w = (labels != -100).float()
        if self.action_ids:
            is_action = torch.isin(labels, torch.tensor(sorted(self.action_ids)))
            w = torch.where(is_action, torch.full_like(w, self.action_weight), w)
        return w

    def labels_for(self, ids: list[int], roles: list[int]) -> list[int]:
        want = ROLE_ID[self.role]
        return [i if r == want else -100 for i, r in zip(ids, roles)]

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if self.padding_free:
            ids, labels, pos = [], [], []
            for f in features:
                ids += f["input_ids"]
                labels += self.labels_for(f["input_ids"], f["token_roles"])
                pos += list(range(len(f["input_ids"])))
            batch = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                     "position_ids": torch.tensor([pos])}
            return self._weighted(batch)
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id)
        labels = torch.full((len(features), width), -100)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(self.labels_for(f["input_ids"], f["token_roles"]))
            mask[row, :n] = 1
        return self._weighted({"input_ids": ids, "labels": labels, "attention_mask": mask})

    def _weighted(self, batch: dict) -> dict:
        if self.action_weight != 1.0:
            batch["loss_weights"] = self.weights_for(batch["labels"])
        return batch
