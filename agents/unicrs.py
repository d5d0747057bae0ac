"""UniCRS as an environment recommender (spec ``unicrs:CKPT_DIR``); the popularity baseline is in
:mod:`agents.popularity`."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import torch

from agents.popularity import RANKED_IN_LOG, fallback_action
from interplay.agent import RecommenderAgent
from interplay.episode import Observation
from interplay.protocol import Action, Role, Turn, mark_title


class UniCRSRuntime:
    """A loaded checkpoint: the model, its KG and linker, generation and ranking (one per process,
    shared by every episode's agent; calls are serialised by a lock)."""

    def __init__(self, ckpt: str | Path, max_new_tokens: int = 40):
        from transformers import AutoTokenizer

        from interplay.catalogue import Catalogue, Item
        from interplay.unicrs.kg import KnowledgeGraph
        from interplay.unicrs.linking import EntityLinker
        from interplay.unicrs.model import UniCRS
        from interplay.unicrs.train import ContextEncoder

        ckpt = Path(ckpt)
        if not (ckpt / "unicrs_config.json").exists():
            raise FileNotFoundError(f"{ckpt}: not a UniCRS checkpoint (no unicrs_config.json); "
                                    "train one with 'interplay train-unicrs'")
        # an agent host actor has no CPU reservation, so Ray pinned torch to one thread
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.kg = KnowledgeGraph.load(ckpt)
        self.titles = json.loads((ckpt / "items.json").read_text())
        catalogue = Catalogue(Item(item_id=i, title=t) for i, t in self.titles.items())
        self.model = UniCRS.load(ckpt).eval()
        self.model.set_graph(*self.kg.edge_tensors())
        self.tok = AutoTokenizer.from_pretrained(self.model.cfg.lm)
        report = json.loads((ckpt / "train_report.json").read_text()) if (ckpt / "train_report.json").exists() else {}
        max_ctx = report.get("settings", {}).get("max_context_tokens", 128)
        self.enc = ContextEncoder(self.tok, EntityLinker(self.kg, catalogue), max_ctx)
        self.items = torch.tensor(self.kg.item_ids)
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()
        with torch.no_grad():
            self.table = self.model.entity_embeddings()

    def _batch(self, ids: list[int], ents: list[int]) -> dict:
        ent = ents or [0]
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
                "entity_ids": torch.tensor([ent]), "entity_mask": torch.tensor([[bool(ents)] * len(ent)])}

    @torch.no_grad()
    def respond(self, turns: list[tuple[Role, str]]) -> tuple[str, list[str]]:
        """(response template, item ids ranked best first) for the dialogue so far."""
        ctx, ents = self.enc.context(turns)
        prompt = ctx + self.enc.text("System:")
        with self.lock:
            b = self._batch(prompt, ents)
            layers, pmask = self.model.prefix(b["input_ids"], b["attention_mask"], b["entity_ids"], b["entity_mask"],
                                              "conv", self.table)
            out = self.model.lm_forward(b["input_ids"], b["attention_mask"], layers, pmask, logits_to_keep=1)
            cache, generated, pos = out.past_key_values, [], len(prompt)
            for _ in range(self.max_new_tokens):
                nxt = int(out.logits[0, -1].argmax())
                if nxt == self.tok.eos_token_id:
                    break
                generated.append(nxt)
                if "\n" in self.tok.decode(generated[-2:]):
                    break
                mask = torch.ones(1, pmask.shape[1] + pos + 1, dtype=torch.long)
                out = self.model.lm(input_ids=torch.tensor([[nxt]]), attention_mask=mask, position_ids=torch.tensor([[pos]]),
                                    past_key_values=cache, use_cache=True)
                cache, pos = out.past_key_values, pos + 1
            text = self.tok.decode(generated, skip_special_tokens=True).split("\n")[0].strip()
            b = self._batch(ctx + self.enc.text(f"System: {text}") + [self.tok.eos_token_id], ents)
            scores = self.model.entity_scores(b, "rec", self.items)[0]
        mentioned = {self.kg.entities[e] for _, t in turns for e in self.enc.linker.link(t)}
        order = [self.kg.entities[int(self.items[i])] for i in scores.argsort(descending=True)]
        return text, [i for i in order if i not in mentioned]


_RUNTIMES: dict[str, UniCRSRuntime] = {}
_LOAD_LOCK = threading.Lock()


def load_runtime(ckpt: str) -> UniCRSRuntime:
    """The process's runtime for ``ckpt`` (episodes start concurrently in the agent host's
    threads: one loads, the others wait for it)."""
    with _LOAD_LOCK:
        if ckpt not in _RUNTIMES:
            _RUNTIMES[ckpt] = UniCRSRuntime(ckpt)
        return _RUNTIMES[ckpt]


class UniCRSRecommender(RecommenderAgent):
    """Generates a response template; when it holds the item placeholder the turn recommends
    (placeholders filled with the top-ranked titles not yet mentioned), otherwise it inquires. The
    ranking (top 50 titles) is in ``turn.meta["ranked_items"]`` for Recall@k. A caller that narrows
    the turn to ``recommend`` (``observation.allowed_actions``, as the recommender evaluation does)
    gets the top-ranked title when the template has no placeholder (``meta["forced"]``)."""

    def __init__(self, ckpt: str, catalogue=None, seed: int = 0):
        super().__init__(catalogue, seed)
        self.runtime = load_runtime(str(Path(ckpt).resolve()))

    def act(self, observation: Observation) -> Turn:
        from interplay.unicrs.train import PLACEHOLDER

        text, ranked = self.runtime.respond([(t.role, t.text) for t in observation.history])
        titles = [self.runtime.titles[i] for i in ranked[:RANKED_IN_LOG]]
        if not text:
            text = "What kind of movie are you in the mood for?"
        n = text.count(PLACEHOLDER)
        meta: dict = {"ranked_items": titles}
        if n:
            for title in titles[:n]:
                text = text.replace(PLACEHOLDER, mark_title(title), 1)
            action = Action.RECOMMEND
        elif observation.allowed_actions is not None and Action.INQUIRE not in observation.allowed_actions \
                and Action.RECOMMEND in observation.allowed_actions:
            # asked for a recommendation (the evaluated turn): the top item of its ranking
            action, text = Action.RECOMMEND, f"You might like {mark_title(titles[0])}."
            meta["forced"] = True
        else:
            action = Action.INQUIRE
        allowed = observation.legal_actions(self.role)
        if action not in allowed:  # the caller narrowed the turn to other actions: say the text as one
            action = fallback_action(allowed)
        return Turn(action=action, text=text, raw=text, meta=meta)
