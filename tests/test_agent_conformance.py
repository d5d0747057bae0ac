"""The agent conformance checker: built-in agents pass it, broken agents fail the check they break,
and the documented example passes it the way docs/agents.md runs it."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from agents.rule_based import RuleBasedRecommender, RuleBasedUser
from interplay.agent import RecommenderAgent, UserAgent
from interplay.protocol import Action, Turn, mark_title
from interplay.simulation_data import load_demo
from interplay.testing import AgentConformanceError, check_agent

DEMO = load_demo()
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("cls", [RuleBasedUser, RuleBasedRecommender])
def test_rule_agents_conform(cls):
    report = check_agent(lambda seed: cls(catalogue=DEMO.catalogue, seed=seed))
    assert report.ok, report.summary()
    assert report.turns_checked >= 6 and set(report.results) == {"role", "view_typing", "allowed_actions",
                                                                   "picklable", "seeded"}


@pytest.fixture(scope="module")
def llm_parts(tiny_model_dir):
    from interplay.backends.transformers_backend import TransformersBackend
    from interplay.prompting import load_prompt_tokenizer

    return TransformersBackend(str(tiny_model_dir), dtype="float32"), load_prompt_tokenizer(str(tiny_model_dir))


@pytest.mark.parametrize("name", ["ZeroShotUser", "ZeroShotRecommender", "UserSimulator", "RecommenderSimulator"])
def test_llm_agents_conform_with_constrained_decoding(llm_parts, name):
    import agents.llm
    import agents.zero_shot
    from interplay.backends.base import GenerationParams

    cls = getattr(agents.zero_shot, name, None) or getattr(agents.llm, name)
    backend, tok = llm_parts
    report = check_agent(lambda seed: cls(backend, tok, GenerationParams(max_new_tokens=8), catalogue=DEMO.catalogue,
                                          seed=seed), episodes=1, max_turns=4)
    assert report.ok, report.summary()


# -- agents that break one rule each -------------------------------------------------------------

class EagerUser(UserAgent):
    """Accepts at once, whatever it is allowed to do."""

    def act(self, observation):
        return Turn(Action.ACCEPT, "Yes!")


class LaxUser(UserAgent):
    """Takes any view (its reset skips the base class's check)."""

    def reset(self, view):
        self.view = view

    def act(self, observation):
        allowed = observation.legal_actions(self.role)
        return Turn(Action.DISCLOSE_GOAL if Action.DISCLOSE_GOAL in allowed else sorted(allowed)[0], "Something good.")


class UnseededRecommender(RecommenderAgent):
    """Recommends at random without using its seed."""

    def act(self, observation):
        allowed = observation.legal_actions(self.role)
        if Action.RECOMMEND not in allowed:
            return Turn(sorted(allowed)[0], "Hm?")
        return Turn(Action.RECOMMEND, f"Try {mark_title(random.choice(list(self.catalogue)).title)}.")


class InventingRecommender(RecommenderAgent):
    """Names a film that is not in the catalogue, and logs something that does not pickle."""

    def act(self, observation):
        allowed = observation.legal_actions(self.role)
        if Action.RECOMMEND not in allowed:
            return Turn(sorted(allowed)[0], "Hm?", meta={"gen": (i for i in range(3))})
        return Turn(Action.RECOMMEND, f"Try {mark_title('The Matrix (2017)')}.", meta={"gen": (i for i in range(3))})


def test_broken_agents_fail_the_check_they_break():
    def make(cls):
        return check_agent(lambda seed: cls(catalogue=DEMO.catalogue, seed=seed), episodes=2)

    eager = make(EagerUser)
    assert "accept where only" in eager.results["allowed_actions"] and eager.results["seeded"] is None
    lax = make(LaxUser)
    assert "accepted a RecommenderView" in lax.results["view_typing"] and lax.results["allowed_actions"] is None
    unseeded = make(UnseededRecommender)
    assert "differs between two agents" in unseeded.results["seeded"] and unseeded.results["allowed_actions"] is None
    inventing = make(InventingRecommender)
    assert "not in the catalogue" in inventing.results["allowed_actions"]
    assert "does not pickle" in inventing.results["picklable"]
    with pytest.raises(AgentConformanceError, match="EagerUser: does not conform"):
        eager.raise_for_failures()

    class NotAnAgent:
        role = None

    report = check_agent(lambda seed: NotAnAgent())
    assert "is not an interplay.agent.Agent" in report.results["role"] and not report.ok


def test_a_class_defined_in_a_function_cannot_travel_to_ray():
    class Local(RuleBasedUser):
        pass

    report = check_agent(lambda seed: Local(catalogue=DEMO.catalogue, seed=seed), episodes=1)
    assert "cannot be imported by that path" in report.results["picklable"]


def test_docs_example_passes_the_checker_as_the_docs_run_it(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "agents.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    (tmp_path / "my_agents.py").write_text(blocks[0])  # "Save it as my_agents.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    check = next(b for b in blocks if "check_agent" in b)
    exec(compile(check, "docs/agents.md", "exec"), {})
    assert "RandomRecommender: conforms" in capsys.readouterr().out
    sys.modules.pop("my_agents", None)
