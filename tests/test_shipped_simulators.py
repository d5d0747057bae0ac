"""The simulators shipped with the package (interplay/simulators/): small adapters with their model
cards, on the real default model; legal opening turns in their own words (free decoding); the
UserSim accepts its target and refuses an item contradicting every wish (greedy, the 12 embedded
demo episodes); the RecSim recommends catalogue titles."""

import pytest

from interplay.backends.adapters import adapter_base, adapter_size_mb, is_adapter
from interplay.backends.base import GenerationParams
from interplay.backends.default_model import DEFAULT_MODEL
from interplay.episode import HistoryTurn, Observation, build_recommender_view, build_user_view
from interplay.grounding import ground_history
from interplay.protocol import Action, Role, legal_actions, mark_title
from interplay.simulation_data import load_demo
from interplay.simulators import SHIPPED_NAMES, shipped_dir
from interplay.training.counterfactual import contradicts

pytestmark = pytest.mark.slow
DEMO = load_demo()
GREEDY = dict(max_new_tokens=64, temperature=0.0)


@pytest.fixture(scope="module")
def backends():
    from interplay.backends.transformers_backend import TransformersBackend

    return {role: TransformersBackend(str(shipped_dir(role)), dtype="float32") for role in Role}


def agent(backends, role, spec, index, decoding="constrained", params=None):
    from interplay.agent_specs import AgentContext, AgentSpec, build_agent

    b = backends[role]
    ctx = AgentContext(role=role, arg=None, catalogue=DEMO.catalogue, seed=index, backend=b, tokenizer=b.tokenizer,
                       params=params or GenerationParams(**GREEDY, decoding=decoding))
    a = build_agent(AgentSpec(SHIPPED_NAMES[role]), ctx)
    view = build_user_view(f"e{index}", spec) if role is Role.USER else build_recommender_view(f"e{index}", spec)
    a.reset(view)
    return a


@pytest.mark.parametrize("role", list(Role))
def test_each_shipped_adapter_is_small_on_the_default_model_and_has_its_card(role):
    from interplay.results_docs import checkpoint_hash

    folder = shipped_dir(role)
    assert is_adapter(folder) and adapter_base(folder) == DEFAULT_MODEL
    assert adapter_size_mb(folder) <= 25
    card = (folder / "README.md").read_text()
    assert checkpoint_hash(folder) in card and "experiments/train_simulators.sh" in card


@pytest.mark.parametrize("role", list(Role))
def test_free_decoding_writes_legal_opening_turns(backends, role):
    """Without the grammar, the model itself writes the protocol's turns (the parser would raise)."""
    for index, spec in enumerate(DEMO.episodes[:4]):
        turn = agent(backends, role, spec, index, decoding="free").act(Observation(history=[], turn_index=0))
        assert turn.action in legal_actions(role, False) and turn.text


def test_the_usersim_accepts_its_target_and_refuses_an_item_contradicting_every_wish(backends):
    accepted_target = refused_contrary = 0
    for index, spec in enumerate(DEMO.episodes):
        user = agent(backends, Role.USER, spec, index)
        opening = user.act(Observation(history=[], turn_index=0))
        contrary = next(item for item in DEMO.catalogue if contradicts(item, spec.target))
        answers = []
        for title in (spec.target.title, contrary.title):
            history = ground_history([
                HistoryTurn(role=Role.USER, action=opening.action, text=opening.text),
                HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND, text=f"You might like {mark_title(title)}.")],
                DEMO.catalogue, spec.target)
            answers.append(agent(backends, Role.USER, spec, index).act(
                Observation(history=history, turn_index=2, allowed_actions=legal_actions(Role.USER, True))).action)
        accepted_target += answers[0] is Action.ACCEPT
        refused_contrary += answers[1] is not Action.ACCEPT
    assert (accepted_target, refused_contrary) == (len(DEMO.episodes), len(DEMO.episodes))


def test_with_the_simulation_controls_the_usersim_does_not_say_a_rejection_again(backends):
    """Two contradicting recommendations in a row: greedy, the UserSim rejects the second in the
    words of the first in some episodes (the loop the replays count as a fault); decoded with the
    simulation's repetition controls (still greedy), no second turn says the first again."""
    from interplay.metrics.behaviour import turn_values
    from interplay.runtime.role_decoding import with_simulation_controls

    def second_rejections(params):
        repeats = 0
        for index, spec in enumerate(DEMO.episodes):
            contrary = [item for item in DEMO.catalogue if contradicts(item, spec.target)][:2]
            history = []
            for item in contrary:
                history.append(HistoryTurn(role=Role.RECOMMENDER, action=Action.RECOMMEND,
                                           text=f"You might like {mark_title(item.title)}."))
                turn = agent(backends, Role.USER, spec, index, params=params).act(
                    Observation(history=ground_history(history, DEMO.catalogue, spec.target),
                                turn_index=len(history), allowed_actions=legal_actions(Role.USER, True)))
                history.append(HistoryTurn(role=Role.USER, action=turn.action, text=turn.text))
            repeats += sum(turn_values([(t.role, t.text) for t in history], Role.USER)["self_repeat_rate"])
        return repeats

    greedy = GenerationParams(**GREEDY)
    assert second_rejections(greedy) >= 1
    assert second_rejections(with_simulation_controls(greedy)) == 0


def test_the_recsim_recommends_catalogue_titles(backends):
    """After the user says what it wants, the RecSim (under the turn grammar, its default) chooses to
    recommend in most episodes, and names titles of the run's catalogue."""
    recommends, named = 0, []
    for index, spec in enumerate(DEMO.episodes[:6]):
        wish = HistoryTurn(role=Role.USER, action=Action.DISCLOSE_GOAL, text=spec.target.attribute_text)
        turn = agent(backends, Role.RECOMMENDER, spec, index).act(Observation(history=[wish], turn_index=1))
        if turn.action is Action.RECOMMEND:
            recommends += 1
            named += turn.titles
    assert recommends >= 3 and named and all(DEMO.catalogue.resolve(t) is not None for t in named)


def test_bare_llm_is_the_shipped_simulator_of_its_role(tmp_path):
    """Parsed once, in the config, for the role: bare ``llm`` is the shipped UserSim / RecSim,
    ``llm:MODEL`` prompts MODEL; a run saved when bare ``llm`` meant the default model prompted is
    not resumed with the shipped simulators."""
    import json

    from interplay.agent_specs import AgentSpec, check_agent_spec
    from interplay.evaluation.config import EvalConfig
    from interplay.run_folder import RunDirError, prepare_run_folder
    from interplay.runtime.simulation import SimulationConfig

    cfg = SimulationConfig(user="llm", recommender="llm", out=str(tmp_path / "run"))
    assert cfg.specs == {Role.USER: AgentSpec("usersim"), Role.RECOMMENDER: AgentSpec("recsim")}
    assert cfg.model_dump(mode="json")["user"] == "usersim"  # saved resolved, as text
    assert SimulationConfig(user=f"llm:{DEFAULT_MODEL}").user == AgentSpec("llm", DEFAULT_MODEL)
    assert EvalConfig(kind="recommender", agent="llm", data="d", out="o").spec == AgentSpec("recsim")
    assert EvalConfig(kind="user", agent="llm", data="d", out="o").spec == AgentSpec("usersim")
    assert check_agent_spec("llm", Role.USER) == AgentSpec("usersim")
    with pytest.raises(ValueError, match="user simulator checkpoint cannot play the recommender"):
        check_agent_spec("usersim", Role.RECOMMENDER)
    # a config.json written before: bare llm was the prompted default model
    old = tmp_path / "old"
    old.mkdir()
    saved = {**cfg.model_dump(mode="json"), "user": "llm", "recommender": "llm", "out": str(old)}
    (old / "config.json").write_text(json.dumps(saved))
    assert SimulationConfig.read_saved(json.dumps(saved)).user == AgentSpec("llm", DEFAULT_MODEL)
    with pytest.raises(RunDirError, match="recommender, user"):
        prepare_run_folder(old, cfg.model_copy(update={"out": str(old)}), resume=True)
    prepare_run_folder(old, SimulationConfig(user=f"llm:{DEFAULT_MODEL}", recommender=f"llm:{DEFAULT_MODEL}",
                                             out=str(old)), resume=True)  # the same agents: resumes
