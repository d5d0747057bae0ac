"""Chaos and soak (experiments/chaos.py): random kills of the model server, the agent host and the
driver of real runs (real Ray, real processes); after resuming, every planned episode id is logged
finished exactly once, none lost, none duplicated."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, subprocess_env

sys.path.insert(0, str(ROOT / "experiments"))
from chaos import TARGETS, chaos_runs, soak_run  # noqa: E402

pytestmark = pytest.mark.slow


def test_random_kills_lose_and_duplicate_nothing(tiny_model_dir, tmp_path):
    results = chaos_runs(str(tiny_model_dir), tmp_path, runs=3, seed=7, env=subprocess_env())
    assert {r.kills[0].split()[0] for r in results} == set(TARGETS)  # each part killed once
    for r in results:
        assert len(r.kills) == 1 and "missed" not in r.kills[0], r
        assert r.lost == 0 and r.duplicated == 0 and r.distinct == r.planned == 12, r
    driver = next(r for r in results if r.kills[0].startswith("driver"))
    assert driver.invocations == 2  # the killed driver's run was resumed once


def test_soak_with_repeated_agent_host_kills(tmp_path):
    r = soak_run(tmp_path, episodes=200, kills=3, seed=3, env=subprocess_env())
    assert len(r.kills) == 3 and not any("missed" in k for k in r.kills), r
    assert r.lost == 0 and r.duplicated == 0 and r.distinct == r.planned == 200, r
