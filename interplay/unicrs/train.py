"""UniCRS training in three stages on a built data folder's dialogues.

1. prompt pre-training: from context + response, predict the response's entities (all entities);
2. conversation: generate the response template (items replaced by ``[ITEM]``) after the context,
   under the conversation prompt (the R-GCN frozen);
3. recommendation: from context + template, score the recommended item among the catalogue items.
Each stage reports its valid loss before and after; each finished stage is saved (``stages.json``),
so an interrupted run resumes at the next stage.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from interplay.data.build import read_catalogue, read_records
from interplay.protocol import Role
from interplay.unicrs.kg import RELATIONS, build_kg
from interplay.unicrs.linking import _TITLE_RE, EntityLinker, linking_coverage
from interplay.unicrs.model import UniCRS, UniCRSConfig

PLACEHOLDER = "[ITEM]"
STAGES = ("pretrain", "conv", "rec")


def speaker(role: Role) -> str:
    return "User" if role is Role.USER else "System"


def plain(text: str) -> str:
    return _TITLE_RE.sub(lambda m: m.group(1).strip(), text)


def template(text: str) -> str:
    """The response with every marked item replaced by the placeholder."""
    return _TITLE_RE.sub(PLACEHOLDER, text)


@dataclass
class Example:
    context: list[int]
    entities: list[int]
    response: list[int]  # plain response tokens (pre-training)
    template: list[int]  # template tokens + EOS (conversation, recommendation)
    response_entities: list[int] = field(default_factory=list)
    items: list[int] = field(default_factory=list)  # entity ids of the items the turn recommends


class ContextEncoder:
    """Dialogue history -> context token ids and linked entities, as training and the agent share."""

    def __init__(self, tokenizer, linker: EntityLinker, max_context_tokens: int = 128, max_entities: int = 16):
        self.tok, self.linker = tokenizer, linker
        self.max_context_tokens, self.max_entities = max_context_tokens, max_entities

    def context(self, turns: list[tuple[Role, str]]) -> tuple[list[int], list[int]]:
        text = "".join(f"{speaker(r)}: {plain(t)}\n" for r, t in turns)
        ids = self.tok(text, add_special_tokens=False)["input_ids"][-self.max_context_tokens:]
        ents: list[int] = []
        for _, t in turns:
            ents.extend(self.linker.link(t))
        ents = list(dict.fromkeys(reversed(ents)))[: self.max_entities][::-1]  # the most recent ones
        return ids, ents

    def text(self, s: str) -> list[int]:
        return self.tok(s, add_special_tokens=False)["input_ids"]


def build_examples(records, enc: ContextEncoder, max_response_tokens: int = 48) -> list[Example]:
    """One example per recommender turn after the first."""
    eos = enc.tok.eos_token_id
    out = []
    for rec in records:
        turns = [(t.role, t.text) for t in rec.turns]
        for i, t in enumerate(rec.turns):
            if t.role is not Role.RECOMMENDER or i == 0:
                continue
            ctx, ents = enc.context(turns[:i])
            items = [e for e in (enc.linker.item_entity(x.strip()) for x in _TITLE_RE.findall(t.text)) if e is not None]
            out.append(Example(ctx, ents, enc.text(f"System: {plain(t.text)}")[:max_response_tokens],
                               enc.text(f"System: {template(t.text)}")[:max_response_tokens] + [eos],
                               enc.linker.link(t.text), items))
    return out


def collate(examples: list[Example], part: str, pad_id: int) -> dict:
    """Right-padded batch of context + ``part`` ("response" | "template"); ``labels`` mark the part."""
    seqs = [e.context + getattr(e, part) for e in examples]
    n = max(map(len, seqs))
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    labels = torch.full((len(seqs), n), -100, dtype=torch.long)
    for i, (e, s) in enumerate(zip(examples, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, len(e.context): len(s)] = torch.tensor(getattr(e, part))
    m = max(1, max(len(e.entities) for e in examples))
    ent = torch.zeros((len(examples), m), dtype=torch.long)
    emask = torch.zeros((len(examples), m), dtype=torch.bool)
    for i, e in enumerate(examples):
        ent[i, : len(e.entities)] = torch.tensor(e.entities, dtype=torch.long)
        emask[i, : len(e.entities)] = True
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "entity_ids": ent, "entity_mask": emask}


def stage_loss(model: UniCRS, stage: str, examples: list[Example], pad_id: int, item_index: dict[int, int],
               items: torch.Tensor) -> torch.Tensor:
    """The stage's loss on a batch."""
    if stage == "pretrain":
        batch = collate(examples, "response", pad_id)
        logp = torch.log_softmax(model.entity_scores(batch, "pretrain"), -1)
        return -torch.cat([logp[i, e.response_entities] for i, e in enumerate(examples)]).mean()
    if stage == "conv":
        batch = collate(examples, "template", pad_id)
        layers, pmask = model.prefix(batch["input_ids"], batch["attention_mask"], batch["entity_ids"],
                                     batch["entity_mask"], "conv", model.entity_embeddings().detach())
        logits = model.lm_forward(batch["input_ids"], batch["attention_mask"], layers, pmask).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten())
    batch = collate(examples, "template", pad_id)
    targets = torch.tensor([item_index[e.items[0]] for e in examples])
    return torch.nn.functional.cross_entropy(model.entity_scores(batch, "rec", items), targets)


def stage_examples(stage: str, examples: list[Example]) -> list[Example]:
    if stage == "pretrain":
        return [e for e in examples if e.response_entities]
    if stage == "rec":  # one example per recommended item
        return [Example(e.context, e.entities, e.response, e.template, e.response_entities, [it])
                for e in examples for it in e.items]
    return examples


@dataclass
class TrainSettings:
    """Sizes of a run (defaults: about 25 minutes on 2 CPU cores with SmolLM2-135M)."""

    max_train: int = 400  # examples per stage
    max_valid: int = 96
    batch_size: int = 8
    lr: float = 1e-3
    epochs: int = 1
    max_context_tokens: int = 128
    seed: int = 0


def mean_loss(model, stage, examples, pad_id, item_index, items, bs) -> float:
    model.eval()
    with torch.no_grad():
        losses = [stage_loss(model, stage, examples[i:i + bs], pad_id, item_index, items).item() * len(examples[i:i + bs])
                  for i in range(0, len(examples), bs)]
    return sum(losses) / max(1, len(examples))


def train_unicrs(data: str | Path, out: str | Path, lm: str | None = None, settings: TrainSettings | None = None,
                 extra_coverage: dict[str, str | Path] | None = None, progress: bool = True) -> dict:
    """Build the KG, link entities, train the three stages; returns the training report."""
    from rich.progress import Progress
    from transformers import AutoTokenizer

    from interplay.backends.default_model import resolve_model_path

    s = settings or TrainSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(s.seed)
    torch.manual_seed(s.seed)
    catalogue = read_catalogue(data)
    kg = build_kg(catalogue)
    kg.save(out)
    (out / "items.json").write_text(json.dumps({kg.entities[i]: catalogue[kg.entities[i]].title for i in kg.item_ids}))
    linker = EntityLinker(kg, catalogue)
    train_recs, valid_recs = read_records(data, "train"), read_records(data, "valid")
    report_path = out / "train_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if "kg" not in report:
        report["kg"] = kg.stats()
        report["linking"] = {f"{Path(data).name}/train": linking_coverage(linker, train_recs),
                             f"{Path(data).name}/valid": linking_coverage(linker, valid_recs)}
        for name, folder in (extra_coverage or {}).items():
            report["linking"][name] = linking_coverage(EntityLinker(kg, read_catalogue(folder)), read_records(folder))
    lm_path = resolve_model_path(lm)
    tok = AutoTokenizer.from_pretrained(lm_path)
    enc = ContextEncoder(tok, linker, s.max_context_tokens)
    train_ex, valid_ex = build_examples(train_recs, enc), build_examples(valid_recs, enc)
    cfg_path = out / "unicrs_config.json"
    if cfg_path.exists():
        model = UniCRS.load(out)
    else:
        model = UniCRS(UniCRSConfig(lm=lm_path, n_entities=len(kg.entities), n_relations=len(RELATIONS)))
    model.set_graph(*kg.edge_tensors())
    items = torch.tensor(kg.item_ids)
    item_index = {e: i for i, e in enumerate(kg.item_ids)}
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    report.setdefault("stages", {})
    report["settings"] = s.__dict__
    for stage in STAGES:
        if stage in report["stages"]:
            continue
        tr = stage_examples(stage, train_ex)
        va = stage_examples(stage, valid_ex)
        rng = random.Random(s.seed)
        tr = rng.sample(tr, min(len(tr), s.max_train))
        va = random.Random(s.seed + 1).sample(va, min(len(va), s.max_valid))
        frozen = {"conv": ["rgcn", "rec_head"], "pretrain": [], "rec": []}[stage]
        params = [p for n, p in model.named_parameters() if not n.startswith("lm.")
                  and not any(n.startswith(f) for f in frozen)]
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.01)
        before = mean_loss(model, stage, va, pad, item_index, items, s.batch_size)
        t0, train_losses = time.perf_counter(), []
        steps = s.epochs * ((len(tr) + s.batch_size - 1) // s.batch_size)
        with Progress(disable=not progress) as bar:
            task = bar.add_task(f"unicrs {stage} (valid {before:.3f})", total=steps)
            for _ in range(s.epochs):
                rng.shuffle(tr)
                for i in range(0, len(tr), s.batch_size):
                    model.train()
                    loss = stage_loss(model, stage, tr[i:i + s.batch_size], pad, item_index, items)
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    train_losses.append(loss.item())
                    bar.update(task, advance=1, description=f"unicrs {stage} loss {loss.item():.3f}")
        after = mean_loss(model, stage, va, pad, item_index, items, s.batch_size)
        report["stages"][stage] = {"train_examples": len(tr), "valid_examples": len(va), "valid_loss_before": before,
                                   "valid_loss_after": after, "first_train_losses": train_losses[:3],
                                   "last_train_losses": train_losses[-3:], "seconds": round(time.perf_counter() - t0, 1)}
        model.save(out)
        report_path.write_text(json.dumps(report, indent=2))
    report_path.write_text(json.dumps(report, indent=2))
    return report
