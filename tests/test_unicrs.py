"""UniCRS: R-GCN, prefix injection through the frozen LM, entity linking, the KG, training and the agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from interplay.catalogue import Catalogue, Item
from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode import Persona, Target, WatchedItem
from interplay.protocol import Action, Role, mark_title
from interplay.unicrs.kg import RELATIONS, build_kg
from interplay.unicrs.linking import EntityLinker

ITEMS = [
    Item(item_id="ml:2571", title="Matrix, The (1999)", attributes=("action", "sci-fi", "cyberpunk", "good")),
    Item(item_id="ml:1", title="Toy Story (1995)", attributes=("animation", "children", "pixar", "good")),
    Item(item_id="ml:6377", title="Finding Nemo (2003)", attributes=("animation", "children", "pixar")),
    Item(item_id="ml:68954", title="Up (2009)", attributes=("animation", "adventure", "pixar")),
    Item(item_id="ml:6", title="Heat (1995)", attributes=("action", "crime", "heist")),
    Item(item_id="ml:1917", title="Armageddon (1998)", attributes=("action", "sci-fi", "asteroid")),
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(ITEMS)


def test_kg_has_typed_edges_and_both_directions(catalogue):
    kg = build_kg(catalogue, min_attribute_movies=2)
    names = set(kg.entities)
    assert {"ml:2571", "sci-fi", "pixar", "cyberpunk"} - {"cyberpunk"} <= names
    assert "cyberpunk" not in names and "heist" not in names  # in one movie only: connects nothing
    edges = {(kg.entities[h], kg.entities[t], RELATIONS[r]) for h, t, r in kg.edges}
    assert ("ml:1", "pixar", "has_attribute") in edges and ("pixar", "ml:1", "attribute_of") in edges
    assert ("ml:6", "crime", "has_genre") in edges and ("crime", "ml:6", "genre_of") in edges
    stats = kg.stats()
    assert stats["items"] == 6 and stats["edges"] == len(kg.edges) and len(kg.item_ids) == 6
    ei, et = kg.edge_tensors()
    assert ei.shape == (2, len(kg.edges)) and et.max() < len(RELATIONS)


def test_entity_linking_hand_written(catalogue):
    kg = build_kg(catalogue, min_attribute_movies=1)
    link = EntityLinker(kg, catalogue)
    name = lambda ids: [kg.entities[i] for i in ids]  # noqa: E731
    assert name(link.link(f"have you seen {mark_title('The Matrix (1999)')}?")) == ["ml:2571"]
    assert name(link.link(f"or {mark_title('Finding Nemmo (2003)')}")) == ["ml:6377"]  # fuzzy, same year
    assert name(link.link("i loved toy story as a kid")) == ["ml:1"]  # unmarked, no year
    assert name(link.link("I like scary movies and comedies")) == ["horror", "comedy"]  # aliases
    assert name(link.link("something cyberpunk, maybe a heist")) == ["cyberpunk", "heist"]
    assert link.link("what's up? it was good") == []  # one-word titles and common words do not link
    assert name(link.link("Sci fi with an asteroid", titles=["Heat (1995)"])) == ["ml:6", "sci-fi", "asteroid"]


def test_rgcn_shapes_and_gradient_flow():
    from interplay.unicrs.model import RGCNEncoder

    torch.manual_seed(0)
    enc = RGCNEncoder(n_entities=6, dim=8, n_relations=4, num_bases=2, layers=2)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    edge_type = torch.tensor([0, 2, 1, 3])
    out = enc(edge_index, edge_type)
    assert out.shape == (6, 8)
    out[1].sum().backward()  # entity 1's embedding depends on its neighbour 0 through relation 0
    assert enc.embed.weight.grad[0].abs().sum() > 0 and enc.embed.weight.grad[1].abs().sum() > 0
    assert enc.embed.weight.grad[4].abs().sum() == 0  # unconnected entity: no influence
    for conv in enc.convs:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in conv.parameters())
        assert conv.weight.shape[0] == 2  # basis decomposition: 2 bases, not 4 relation matrices


def _model(tiny_model_dir, n_entities=6):
    from interplay.unicrs.model import UniCRS, UniCRSConfig

    torch.manual_seed(0)
    return UniCRS(UniCRSConfig(lm=str(tiny_model_dir), n_entities=n_entities, n_relations=4, entity_dim=16,
                               num_bases=2, n_task_tokens=3, n_word_prompts=2, dropout=0.0))


def test_prefix_has_the_lm_kv_heads_and_changes_its_output(tiny_model_dir):
    model = _model(tiny_model_dir)
    model.set_graph(torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 2]))
    cfg = model.lm.config
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    mask = torch.ones_like(ids)
    ents, emask = torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    layers, pmask = model.prefix(ids, mask, ents, emask, "conv")
    assert len(layers) == cfg.num_hidden_layers
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    assert layers[0][0].shape == (1, cfg.num_key_value_heads, 3 + 2 + 2, head_dim)  # task + entities + words
    plain = model.lm(input_ids=ids).logits
    with_prefix = model.lm_forward(ids, mask, layers, pmask).logits
    assert with_prefix.shape == plain.shape and not torch.allclose(with_prefix, plain, atol=1e-4)
    # a prefix whose keys/values are zero, fully masked out, leaves the LM as it was
    zero = [(torch.zeros_like(k), torch.zeros_like(v)) for k, v in layers]
    masked = model.lm_forward(ids, mask, zero, torch.zeros_like(pmask)).logits
    assert torch.allclose(masked, plain, atol=1e-5)
    # gradients reach the fusion and the R-GCN through the frozen LM, and the LM stays frozen
    with_prefix[0, -1].logsumexp(-1).backward()
    assert model.fusion.mlp[-1].weight.grad.abs().sum() > 0 and model.rgcn.embed.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.lm.parameters())
    # another task's prompt gives another prefix
    other, _ = model.prefix(ids, mask, ents, emask, "rec")
    assert not torch.allclose(other[0][0], layers[0][0])


def _turn(role, action, text):
    return RecordTurn(role=role, action=action, text=text)


def _records(split: str, n: int) -> list[DialogueRecord]:
    U, R = Role.USER, Role.RECOMMENDER
    persona = Persona(summary="Likes animation.", watched=[WatchedItem(title="Up (2009)", text="Lovely.")])
    out = []
    for i in range(n):
        item = ITEMS[1] if i % 2 == 0 else ITEMS[5]
        ask = "an animated movie with pixar" if i % 2 == 0 else "sci-fi action with an asteroid"
        out.append(DialogueRecord(
            id=f"{split}-{i}", source="test", split=split, persona=persona,
            target=Target(item_id=item.item_id, title=item.title, attributes=list(item.attributes[:2])),
            turns=[_turn(R, Action.GREETING, "Hi! What do you like?"), _turn(U, Action.DISCLOSE_GOAL, f"I want {ask}."),
                   _turn(R, Action.RECOMMEND, f"You may enjoy {mark_title(item.title)}."),
                   _turn(U, Action.ACCEPT, "Great, thanks!")],
            outcome=Outcome(accepted_item=item.title)))
    return out


@pytest.fixture(scope="module")
def unicrs_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("unicrs-data")
    for split, n in (("train", 24), ("valid", 8), ("test", 6)):
        (d / f"{split}.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in _records(split, n)))
    (d / "catalogue.jsonl").write_text("".join(i.model_dump_json() + "\n" for i in ITEMS))
    return d


@pytest.fixture(scope="module")
def unicrs_ckpt(unicrs_data, tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    from interplay.unicrs.train import TrainSettings, train_unicrs

    out = tmp_path_factory.mktemp("unicrs-ckpt")
    report = train_unicrs(unicrs_data, out, str(tiny_model_dir),
                          TrainSettings(max_train=48, max_valid=8, epochs=6, batch_size=8, lr=3e-3), progress=False)
    return out, report


def test_three_stages_learn_on_a_separable_task(unicrs_ckpt):
    out, report = unicrs_ckpt
    for stage in ("pretrain", "conv", "rec"):
        r = report["stages"][stage]
        assert r["valid_loss_after"] < r["valid_loss_before"], (stage, r)
    # two items, told apart by the request: the recommendation loss falls well below chance (ln 6)
    assert report["stages"]["rec"]["valid_loss_after"] < 0.5 * torch.log(torch.tensor(6.0)).item()
    train_cov = next(v for k, v in report["linking"].items() if k.endswith("/train"))
    assert train_cov["marked_titles_linked"] == 1.0 and train_cov["marked_titles"] == 24
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["stages"].keys() == report["stages"].keys()


def test_training_resumes_after_the_last_finished_stage(unicrs_ckpt, unicrs_data, tiny_model_dir):
    from interplay.unicrs.train import TrainSettings, train_unicrs

    out, report = unicrs_ckpt
    again = train_unicrs(unicrs_data, out, str(tiny_model_dir), TrainSettings(max_train=48, max_valid=8), progress=False)
    assert again["stages"] == report["stages"]  # nothing retrained


def test_unicrs_agent_in_the_env_ranks_and_recommends(unicrs_ckpt, unicrs_data, tmp_path, ray_session):
    from interplay.runtime.simulation import SimulationConfig, run_simulation
    from interplay.episode_log import EPISODES_FILE, latest_episodes

    ckpt, _ = unicrs_ckpt
    cfg = SimulationConfig(user="rule", recommender=f"unicrs:{ckpt}", data=str(unicrs_data), split="test",
                           episodes=4, max_turns=6, out=str(tmp_path / "run"), concurrency=4)
    summary = run_simulation(cfg, progress=False)
    assert summary["termination"].get("agent_error", 0) == 0
    episodes = latest_episodes(tmp_path / "run" / EPISODES_FILE)
    rec_turns = [t for ep in episodes for t in ep.turns if t.role is Role.RECOMMENDER]
    assert rec_turns and all(t.action in (Action.RECOMMEND, Action.INQUIRE) for t in rec_turns)
    titles = {i.title for i in ITEMS}
    for t in rec_turns:
        ranked = t.meta["ranked_items"]
        assert ranked and set(ranked) <= titles and len(set(ranked)) == len(ranked)
        if t.action is Action.RECOMMEND:
            assert t.titles and t.titles[0] == ranked[0]


def test_popularity_baseline_ranks_train_recommendations_not_yet_mentioned(unicrs_data, catalogue, tmp_path):
    import shutil

    from agents.popularity import PopularityRecommender
    from interplay.episode import HistoryTurn, Observation, RecommenderView

    data = tmp_path / "data"
    shutil.copytree(unicrs_data, data)

    extra = _records("train", 2)[1].model_copy(update={"id": "train-x"})  # one more Armageddon
    with (data / "train.jsonl").open("a") as fh:  # Armageddon now leads 13 to 12
        fh.write(extra.model_dump_json() + "\n")
    agent = PopularityRecommender(str(data), catalogue=catalogue)
    agent.reset(RecommenderView(episode_id="e"))
    first = agent.act(Observation(history=[], turn_index=0))
    assert first.meta["ranked_items"] == [ITEMS[5].title, ITEMS[1].title] and first.titles == [ITEMS[5].title]
    seen = [HistoryTurn(role=Role.USER, action=Action.FEEDBACK, text=f"I saw {mark_title(ITEMS[5].title)}.")]
    assert agent.act(Observation(history=seen, turn_index=1)).meta["ranked_items"] == [ITEMS[1].title]


def test_unicrs_recommends_its_top_item_when_asked(unicrs_ckpt, unicrs_data):
    """Narrowed to ``recommend`` (the evaluated turn), UniCRS names its top-ranked title even
    where its template would inquire; left free, the same observation is answered as before."""
    from agents.unicrs import UniCRSRecommender
    from interplay.data.build import read_records
    from interplay.episode import HistoryTurn, Observation, RecommenderView

    ckpt, _ = unicrs_ckpt
    agent = UniCRSRecommender(str(ckpt))
    agent.reset(RecommenderView(episode_id="e"))
    checked = 0
    for rec in read_records(unicrs_data, "test"):
        history = [HistoryTurn(role=t.role, action=t.action, text=t.text) for t in rec.turns[:1]]
        free = agent.act(Observation(history=history, turn_index=1))
        forced = agent.act(Observation(history=history, turn_index=1, allowed_actions=frozenset({Action.RECOMMEND})))
        assert forced.action is Action.RECOMMEND and forced.titles[0] == forced.meta["ranked_items"][0]
        assert forced.meta["ranked_items"] == free.meta["ranked_items"]
        if free.action is Action.RECOMMEND:
            assert (forced.text, forced.meta.get("forced")) == (free.text, None)
        else:
            assert forced.meta["forced"] is True
        checked += 1
    assert checked == 6


def test_unicrs_and_popularity_conform(unicrs_ckpt, unicrs_data, catalogue):
    from agents.popularity import PopularityRecommender
    from agents.unicrs import UniCRSRecommender
    from interplay.testing import check_agent

    out, _ = unicrs_ckpt
    for make in (lambda seed: UniCRSRecommender(str(out), catalogue=catalogue, seed=seed),
                 lambda seed: PopularityRecommender(str(unicrs_data), catalogue=catalogue, seed=seed)):
        report = check_agent(make, episodes=2, max_turns=6)
        assert report.ok, report.summary()
