"""Shared fixtures: a tiny random-weight Llama with the real SmolLM2 tokenizer, a Ray session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("INTERPLAY_SHARED_DATA", ROOT.parent / "shared" / "data"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MPLCONFIGDIR", "/tmp/interplay-mpl")
# tests/ holds agent classes used through `py:` specs; Ray workers and CLI subprocesses import them
sys.path.insert(0, str(ROOT / "tests"))
# ...and Ray workers started by in-process tests inherit this environment
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH")) if p)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: the test helpers importable, no usage stats."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (seeded) saved with the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from interplay.backends.default_model import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    """The tiny model's tokenizer (the default model's) with the project's added tokens."""
    from transformers import AutoTokenizer

    from interplay.training.tokenize import add_special_tokens

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    add_special_tokens(tok)
    return tok


@pytest.fixture(scope="module")
def ray_session():
    """A private local Ray instance for in-process runtime tests."""
    import ray

    from interplay.runtime import ray_cluster

    started = ray_cluster.connect(num_cpus=2)
    yield ray
    ray_cluster.disconnect(started)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA} (CI has it; a fresh clone does not)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def movielens_slice(shared_data, tmp_path_factory) -> Path:
    """A data root with the 120 most-rated movies of the shared ml-latest-small and their ratings
    (real rows, cut down so the item encoder trains in seconds)."""
    import csv
    from collections import Counter

    src = shared_data / "movielens-small"
    with (src / "ratings.csv").open() as fh:
        ratings = [row for row in csv.reader(fh) if row and row[0].strip().isdigit()]
    keep = {m for m, _ in Counter(r[1] for r in ratings).most_common(120)}
    root = tmp_path_factory.mktemp("ml-slice")
    (root / "movielens-small").mkdir()
    with (src / "movies.csv").open() as fh, (root / "movielens-small" / "movies.csv").open("w", newline="") as out:
        w = csv.writer(out)
        for row in csv.reader(fh):
            if row and (not row[0].strip().isdigit() or row[0] in keep):
                w.writerow(row)
    with (root / "movielens-small" / "ratings.csv").open("w", newline="") as out:
        csv.writer(out).writerows(r for r in ratings if r[1] in keep)
    return root


@pytest.fixture(scope="session")
def tiny_encoder(movielens_slice, tmp_path_factory) -> Path:
    """An item encoder trained for a few epochs on :func:`movielens_slice`."""
    from interplay.matchscore.train import MatchScoreTrainConfig, train_item_encoder

    out = tmp_path_factory.mktemp("encoder")
    train_item_encoder(MatchScoreTrainConfig(str(movielens_slice), str(out), epochs=3, dim=32, hidden=64,
                                             batch_size=256), progress=False)
    return out


@pytest.fixture(scope="session")
def built_sources(shared_data, tmp_path_factory):
    """ReDial, INSPIRED and IARD built from ../shared/data (once per test session)."""
    from interplay.data.build import build_dataset

    out = tmp_path_factory.mktemp("built")
    paths = {"redial": shared_data / "redial", "inspired": shared_data / "inspired" / "dev.tsv",
             "iard": shared_data / "iard" / "iard_gold.json"}
    for source, path in paths.items():
        build_dataset(source, path, out / source, shared_data, progress=False)
    return out
