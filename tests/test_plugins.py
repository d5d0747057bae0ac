"""Plug-ins outside the tree: a package installed into the venv declares one agent kind and one
backend through entry points, and a real Ray simulation builds the agent in the agent host actor
and the backend in the model server actor, processes that never parsed a spec."""

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import subprocess_env
from test_simulation import simulate

from interplay.episode_log import Termination, read_episodes

PACKAGE = "interplay_echo_plugin"
USER_TURN = "I would like a tense heist film, please."

MODULE = f'''
"""An echo backend (answers every prompt with one fixed user turn) and a prompted-LLM kind on it."""
import os

from interplay.agent_kinds import build_llm
from interplay.agent_specs import AgentKind
from interplay.backends.base import BackendCapabilities


class EchoBackend:
    capabilities = BackendCapabilities(thread_safe=True)

    def __init__(self, model, **kwargs):
        self.model_path = model  # the tokenizer the agent host renders prompts with
        self.pid = os.getpid()

    def generate(self, prompts, params, **kwargs):
        # the LLM agent prefills "<action>": the echo continues from there
        return ["<disclose-goal></action><response>{USER_TURN} (pid " + str(self.pid) + ")</response>"
                for _ in prompts]


ECHO_LLM = AgentKind(build_llm, model=lambda arg: arg, backend="echo", description="echo user (test plug-in)")
'''


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The package, pip-installed into this venv for the module's tests and uninstalled after."""
    src = tmp_path_factory.mktemp("plugin")
    (src / PACKAGE).mkdir()
    (src / PACKAGE / "__init__.py").write_text(MODULE)
    (src / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{PACKAGE.replace('_', '-')}"
        version = "0.0.1"
        [project.entry-points."interplay.agents"]
        echo-llm = "{PACKAGE}:ECHO_LLM"
        [project.entry-points."interplay.backends"]
        echo = "{PACKAGE}:EchoBackend"
        [tool.setuptools]
        packages = ["{PACKAGE}"]
        '''))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(src)], check=True,
                   capture_output=True, timeout=300)
    yield src
    subprocess.run([*pip, "uninstall", "-y", PACKAGE.replace("_", "-")], check=True, capture_output=True, timeout=300)


def test_an_installed_kind_and_backend_run_in_the_ray_actors(installed_plugin, tiny_model_dir, tmp_path):
    out = tmp_path / "echo"
    simulate("--user", f"echo-llm:{tiny_model_dir}", "--recommender", "rule", "--episodes", 3, "--max-turns", 4,
             "--decoding", "free", "--out", out, env=subprocess_env())
    episodes = list(read_episodes(out / "episodes.jsonl"))
    assert len(episodes) == 3
    driver_pids = set()
    for ep in episodes:
        assert ep.termination is Termination.MAX_TURNS  # the echo never accepts
        user_turns = [t for t in ep.turns if t.role.value == "user"]
        assert user_turns and all(t.text.startswith(USER_TURN) and t.action.value == "disclose-goal"
                                  for t in user_turns)
        driver_pids |= {t.text.rsplit("pid ", 1)[1].rstrip(")") for t in user_turns}
    # one backend instance (the run's one model server) made every turn
    assert len(driver_pids) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["user"] == f"echo-llm:{tiny_model_dir}"


def test_an_unknown_kind_names_the_installed_ones(installed_plugin):
    proc = subprocess.run([sys.executable, "-c", "from interplay.agent_specs import AgentSpec; AgentSpec.parse('nope')"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode != 0 and "unknown agent kind 'nope'" in proc.stderr and "echo-llm" in proc.stderr
