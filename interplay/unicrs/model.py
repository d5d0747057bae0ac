"""The UniCRS model: R-GCN entity encoder, knowledge-enhanced prompt fusion, and per-layer KV
prefixes into a frozen causal LM (prefix tuning through ``past_key_values``).

Text side of the fusion: the frozen LM's own input embeddings of the context tokens (UniCRS used a
separate RoBERTa; here a second encoder would add a second tokenizer and forward pass for what the
LM's embeddings already give, and keeps the fused prompt in the LM's space).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

TASKS = ("pretrain", "conv", "rec")
CONFIG_FILE = "unicrs_config.json"
WEIGHTS_FILE = "unicrs_weights.pt"


class UniCRSConfig(BaseModel):
    """Sizes of the trainable parts; ``lm`` is the frozen LM's path."""

    model_config = ConfigDict(extra="forbid")

    lm: str
    n_entities: int
    n_relations: int
    entity_dim: int = 128
    num_bases: int = 8
    rgcn_layers: int = 1
    n_task_tokens: int = 10
    n_word_prompts: int = 8
    max_entities: int = 16
    dropout: float = 0.1


class RGCNEncoder(nn.Module):
    """Entity embeddings through R-GCN layers with basis decomposition (torch-geometric's RGCNConv)."""

    def __init__(self, n_entities: int, dim: int, n_relations: int, num_bases: int, layers: int = 1):
        super().__init__()
        from torch_geometric.nn import RGCNConv

        self.embed = nn.Embedding(n_entities, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        self.convs = nn.ModuleList(RGCNConv(dim, dim, n_relations, num_bases=num_bases) for _ in range(layers))

    def forward(self, edge_index: torch.Tensor, edge_type: torch.Tensor) -> torch.Tensor:
        x = self.embed.weight
        for conv in self.convs:
            x = torch.relu(conv(x, edge_index, edge_type)) + x
        return x


class PromptFusion(nn.Module):
    """Cross-interaction of context token embeddings and linked entity embeddings (a bilinear
    affinity, each side attending to the other), turned into a task's soft prompt:
    ``[task tokens; fused entities; word prompts pooled from the fused tokens]``, then projected by
    an MLP to every layer's prefix keys and values."""

    def __init__(self, hidden: int, entity_dim: int, n_layers: int, n_kv_heads: int, head_dim: int,
                 n_task_tokens: int, n_word_prompts: int, dropout: float):
        super().__init__()
        self.shape = (n_layers, 2, n_kv_heads, head_dim)
        self.entity_proj = nn.Linear(entity_dim, hidden)
        self.affinity = nn.Linear(hidden, hidden, bias=False)
        self.word_queries = nn.Parameter(torch.randn(n_word_prompts, hidden) * hidden ** -0.5)
        self.task_tokens = nn.ParameterDict({t: nn.Parameter(torch.randn(n_task_tokens, hidden) * 0.02) for t in TASKS})
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_layers * 2 * n_kv_heads * head_dim))
        nn.init.zeros_(self.mlp[-1].bias)
        nn.init.normal_(self.mlp[-1].weight, std=0.02)

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor, entities: torch.Tensor,
                entity_mask: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B,T,H], entities [B,E,entity_dim] -> prefix [B,P,layers,2,kv_heads,head_dim], mask [B,P]."""
        b, _, h = tokens.shape
        ent = self.entity_proj(entities)
        aff = self.affinity(tokens) @ ent.transpose(1, 2) / h ** 0.5  # [B,T,E]
        neg = torch.finfo(aff.dtype).min
        has_ent = entity_mask.any(1)[:, None, None]
        to_ent = torch.softmax(aff.masked_fill(~entity_mask[:, None, :], neg), -1) * has_ent
        to_tok = torch.softmax(aff.transpose(1, 2).masked_fill(~token_mask[:, None, :], neg), -1)
        fused_tok = tokens + to_ent @ ent
        fused_ent = ent + to_tok @ tokens
        pool = self.word_queries @ fused_tok.transpose(1, 2) / h ** 0.5  # [B,W,T]
        words = torch.softmax(pool.masked_fill(~token_mask[:, None, :], neg), -1) @ fused_tok
        task = self.task_tokens[task].unsqueeze(0).expand(b, -1, -1)
        prompt = self.norm(torch.cat([task, fused_ent, words], 1))
        mask = torch.cat([torch.ones(b, task.shape[1], dtype=torch.bool, device=tokens.device), entity_mask,
                          torch.ones(b, words.shape[1], dtype=torch.bool, device=tokens.device)], 1)
        return self.mlp(prompt).view(b, prompt.shape[1], *self.shape), mask


class UniCRS(nn.Module):
    """Frozen causal LM + trainable R-GCN, fusion, task prompts and recommendation head."""

    def __init__(self, cfg: UniCRSConfig, lm=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        self.lm = lm if lm is not None else AutoModelForCausalLM.from_pretrained(cfg.lm, dtype=dtype)
        self.lm.requires_grad_(False)
        self.lm.eval()
        c = self.lm.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        # grouped-query attention: the prefix has the model's KV heads, not its query heads
        kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        self.rgcn = RGCNEncoder(cfg.n_entities, cfg.entity_dim, cfg.n_relations, cfg.num_bases, cfg.rgcn_layers)
        self.fusion = PromptFusion(c.hidden_size, cfg.entity_dim, c.num_hidden_layers, kv_heads, head_dim,
                                   cfg.n_task_tokens, cfg.n_word_prompts, cfg.dropout)
        self.rec_head = nn.Linear(c.hidden_size, cfg.entity_dim)
        self.register_buffer("edge_index", torch.zeros((2, 0), dtype=torch.long), persistent=False)
        self.register_buffer("edge_type", torch.zeros(0, dtype=torch.long), persistent=False)

    def set_graph(self, edge_index: torch.Tensor, edge_type: torch.Tensor) -> None:
        self.edge_index, self.edge_type = edge_index, edge_type

    def train(self, mode: bool = True):
        super().train(mode)
        self.lm.eval()  # frozen: no dropout in the LM
        return self

    def entity_embeddings(self) -> torch.Tensor:
        return self.rgcn(self.edge_index, self.edge_type)

    def prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, entity_ids: torch.Tensor,
               entity_mask: torch.Tensor, task: str, entity_table: torch.Tensor | None = None):
        """Per-layer (keys, values) of the task's knowledge-enhanced prompt, and its mask."""
        table = self.entity_embeddings() if entity_table is None else entity_table
        tokens = self.lm.get_input_embeddings()(input_ids).to(table.dtype)
        kv, mask = self.fusion(tokens, attention_mask.bool(), table[entity_ids], entity_mask.bool(), task)
        kv = kv.to(self.lm.dtype)
        layers = [(kv[:, :, i, 0].transpose(1, 2), kv[:, :, i, 1].transpose(1, 2)) for i in range(kv.shape[2])]
        return layers, mask

    def lm_forward(self, input_ids, attention_mask, prefix_layers, prefix_mask, **kwargs):
        """The LM on ``input_ids`` after the prefix; text positions start at 0 as without a prefix."""
        from transformers import DynamicCache

        cache = DynamicCache(ddp_cache_data=prefix_layers)
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        mask = torch.cat([prefix_mask.long(), attention_mask.long()], 1)
        return self.lm(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       use_cache=True, **kwargs)

    def last_hidden(self, out, attention_mask) -> torch.Tensor:
        """Final hidden state of each row's last real token."""
        last = attention_mask.long().sum(1) - 1
        h = out.hidden_states[-1]
        return h[torch.arange(h.shape[0], device=h.device), last]

    def entity_scores(self, batch: dict, task: str, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every entity (or of ``candidates``) for a batch: final hidden state · entity embedding."""
        table = self.entity_embeddings()
        layers, pmask = self.prefix(batch["input_ids"], batch["attention_mask"], batch["entity_ids"],
                                    batch["entity_mask"], task, table)
        out = self.lm_forward(batch["input_ids"], batch["attention_mask"], layers, pmask, output_hidden_states=True,
                              logits_to_keep=1)
        h = self.rec_head(self.last_hidden(out, batch["attention_mask"]).to(table.dtype))
        cand = table if candidates is None else table[candidates]
        return h @ cand.T

    def trainable_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("lm.")}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(self.cfg.model_dump_json(indent=2))
        torch.save(self.trainable_state(), folder / WEIGHTS_FILE)

    @classmethod
    def load(cls, folder: str | Path, lm=None) -> "UniCRS":
        folder = Path(folder)
        cfg = UniCRSConfig.model_validate(json.loads((folder / CONFIG_FILE).read_text()))
        model = cls(cfg, lm=lm)
        missing = model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True), strict=False)
        bad = [k for k in missing.missing_keys if not k.startswith("lm.")]
        if bad or missing.unexpected_keys:
            raise ValueError(f"{folder / WEIGHTS_FILE}: missing {bad}, unexpected {missing.unexpected_keys}")
        return model
