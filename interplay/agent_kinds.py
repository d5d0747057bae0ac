"""The built-in agent kinds: ``rule``, ``llm``, ``py``, ``usersim`` / ``usersim-nomatch`` /
``recsim``, ``zero-shot`` / ``zero-shot-vllm``, ``unicrs``, ``popular``, ``retrieval``. Importing
:mod:`interplay` registers them (``interplay/__init__.py``); an installed package adds its own
through entry points (:mod:`interplay.plugins`)."""

from __future__ import annotations

import importlib

from interplay.agent import Agent
from interplay.agent_specs import AgentContext, AgentKind, register_agent_kind
from interplay.backends.default_model import DEFAULT_MODEL
from interplay.backends.http_clients import http_backend, split_http
from interplay.checkpoint_info import trained_candidates, trained_grounded, trained_prompt_layout, training_config
from interplay.protocol import Role

def _build_rule(ctx: AgentContext) -> Agent:
    from agents.rule_based import RuleBasedRecommender, RuleBasedUser

    threshold = rule_threshold(ctx.role, ctx.arg)
    if ctx.role is Role.RECOMMENDER:
        return RuleBasedRecommender(catalogue=ctx.catalogue, seed=ctx.seed)
    if threshold is None:
        return RuleBasedUser(catalogue=ctx.catalogue, seed=ctx.seed)
    return RuleBasedUser(catalogue=ctx.catalogue, seed=ctx.seed, threshold=threshold)


def rule_threshold(role: Role, arg: str | None) -> float | None:
    """The user's accept threshold of a ``rule:T`` spec (None: the default); ValueError for a
    bad T or an argument given to the rule recommender."""
    if not arg:
        return None
    if role is Role.RECOMMENDER:
        raise ValueError(f"the rule recommender takes no argument (got rule:{arg})")
    try:
        threshold = float(arg)
    except ValueError:
        threshold = -1.0
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"rule:THRESHOLD needs a number in [0, 1], got rule:{arg}")
    return threshold


def build_llm(ctx: AgentContext) -> Agent:
    """An LLM simulator (prompted) of the context's role on its backend: the builder of `llm` and of
    plug-in kinds whose agents are prompted LLMs on their own backend."""
    from agents.llm import RecommenderSimulator, UserSimulator

    cls = UserSimulator if ctx.role is Role.USER else RecommenderSimulator
    return cls(ctx.backend, ctx.tokenizer, ctx.params, catalogue=ctx.catalogue, seed=ctx.seed)


def import_agent_class(path: str) -> type[Agent]:
    """``package.module:ClassName`` -> the class, checked to be an :class:`Agent`."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"py agent spec needs 'py:module:ClassName', got 'py:{path}'")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ValueError(f"{path} is not an interplay Agent subclass")
    return cls


def _check_py(arg: str | None, role: Role) -> None:
    try:
        cls = import_agent_class(arg or "")
    except ImportError as exc:
        raise ValueError(f"cannot import {(arg or '').partition(':')[0]!r} ({exc})") from None
    if cls.role is not role:
        raise ValueError(f"a {cls.role.value} agent, given as the {role.value}")


def _check_rule(arg: str | None, role: Role) -> None:
    if arg:
        rule_threshold(role, arg)


def _build_py(ctx: AgentContext) -> Agent:
    cls = import_agent_class(ctx.arg or "")
    if cls.role is not ctx.role:
        raise ValueError(f"{ctx.arg} is a {cls.role.value} agent, used as {ctx.role.value}")
    return cls(catalogue=ctx.catalogue, seed=ctx.seed)


register_agent_kind("rule", AgentKind(_build_rule, check=_check_rule, description="rule-based user / recommender; rule:T for the user "
                                     "accepts an item covering at least T of its target attributes (default 0.6; "
                                     "rule:0 accepts every recommendation, the yes-sayer floor)"))
def _shipped_for_role(arg: str | None, role: Role) -> str | None:
    """Bare ``llm``: the simulator shipped for the role (``usersim`` / ``recsim``, trained LoRA
    adapters on the default model); ``llm:MODEL`` prompts MODEL."""
    return None if arg else ("usersim" if role is Role.USER else "recsim")


register_agent_kind(
    "llm",
    AgentKind(build_llm, model=lambda arg: arg or DEFAULT_MODEL, stands_for=_shipped_for_role,
              description=f"bare 'llm': the trained simulator shipped for the role (usersim / recsim); "
                          f"llm:MODEL: MODEL prompted, a HF model id or path (the default model prompted: "
                          f"llm:{DEFAULT_MODEL})"),
)
register_agent_kind("py", AgentKind(_build_py, check=_check_py, description="your own Agent subclass: py:module:ClassName"))


def _fine_tuned(role: Role, match_counts: bool = True):
    """Builder of a fine-tuned simulator; ``match_counts=False`` leaves the grounded facts' match
    counts out of a UserSim's prompt even when it was trained with them (an ablation: how much of
    a decision figure its hint explains)."""
    def build(ctx: AgentContext) -> Agent:
        from agents.llm import FineTunedRecommenderSimulator, FineTunedUserSimulator
        from interplay.decision_calibration import calibrated_threshold

        if ctx.role is not role:
            raise ValueError(f"a {role.value} simulator checkpoint cannot play the {ctx.role.value}")
        cls = FineTunedUserSimulator if role is Role.USER else FineTunedRecommenderSimulator
        ckpt = _checkpoint(role)(ctx.arg)
        grounded = trained_grounded(ckpt)
        # a calibrated UserSim decides by its threshold under constrained decoding; free decoding
        # asks for the model's own unconstrained output, so the decision is generated there
        threshold = (calibrated_threshold(ckpt) if role is Role.USER and ctx.params.decoding == "constrained"
                     else None)
        return cls(ctx.backend, ctx.tokenizer, ctx.params, catalogue=ctx.catalogue, seed=ctx.seed,
                   grounded=grounded, with_candidates=trained_candidates(ckpt),
                   grounding_match=match_counts and grounded and bool(training_config(ckpt).get("grounding_match")),
                   prompt_layout=trained_prompt_layout(ckpt), accept_threshold=threshold)

    return build


def _checkpoint(role: Role):
    """The checkpoint of a fine-tuned spec: its argument, else the simulator shipped for ``role``."""
    def model(arg: str | None) -> str:
        if arg:
            return arg
        from interplay.simulators import shipped_simulator

        return str(shipped_simulator(role))

    return model


USER_ONLY, RECOMMENDER_ONLY = frozenset({Role.USER}), frozenset({Role.RECOMMENDER})
register_agent_kind("usersim", AgentKind(_fine_tuned(Role.USER), model=_checkpoint(Role.USER), roles=USER_ONLY,
                                         checkpoint=True,
                                         description="UserSim checkpoint (or LoRA adapter) from 'interplay train "
                                                     "--role user'; bare 'usersim': the one shipped with the package"))
register_agent_kind("usersim-nomatch", AgentKind(_fine_tuned(Role.USER, match_counts=False),
                                                 model=_checkpoint(Role.USER), roles=USER_ONLY, checkpoint=True,
                                                 description="a UserSim checkpoint with the match counts ('Matches 2 "
                                                             "of your 6 wishes') left out of its prompt"))
register_agent_kind("recsim", AgentKind(_fine_tuned(Role.RECOMMENDER), model=_checkpoint(Role.RECOMMENDER),
                                        roles=RECOMMENDER_ONLY, checkpoint=True,
                                        description="RecSim checkpoint (or LoRA adapter) from 'interplay train --role "
                                                    "recommender'; bare 'recsim': the one shipped with the package"))


def _zero_shot_model(arg: str | None) -> str | None:
    from interplay.backends.presets import resolve

    model, url = split_http(arg)
    if url is not None:
        return None  # served elsewhere: no local model server
    return resolve(model)[0] or DEFAULT_MODEL


def _build_zero_shot(ctx: AgentContext) -> Agent:
    from agents.zero_shot import ZeroShotRecommender, ZeroShotUser
    from interplay.backends.presets import resolve

    model, url = split_http(ctx.arg)
    model, preset = resolve(model)
    params = ctx.params
    if preset is not None:
        params = params.model_copy(update={"temperature": preset.temperature, "top_p": preset.top_p,
                                           "max_new_tokens": preset.max_new_tokens})
    backend = http_backend(url, model) if url is not None else ctx.backend
    cls = ZeroShotUser if ctx.role is Role.USER else ZeroShotRecommender
    return cls(backend, ctx.tokenizer, params, catalogue=ctx.catalogue, seed=ctx.seed)


register_agent_kind("zero-shot", AgentKind(
    _build_zero_shot, model=_zero_shot_model, recommender_sees_persona=True,
    description="zero-shot LLM: zero-shot:MODEL (local transformers) or zero-shot:MODEL@http://HOST:PORT/v1 "
                "(OpenAI-compatible server); presets: qwen3-32b, llama-3.1-70b, qwen3-8b, llama-3.1-8b"))
register_agent_kind("zero-shot-vllm", AgentKind(
    _build_zero_shot, model=_zero_shot_model, backend="vllm", recommender_sees_persona=True,
    description="zero-shot LLM on vLLM in-process (GPU, optional extra 'vllm'): zero-shot-vllm:MODEL"))


def _recommender_only(kind: str, cls_name: str, what: str, module: str):
    def build(ctx: AgentContext) -> Agent:
        import importlib

        mod = importlib.import_module(module)

        if ctx.role is not Role.RECOMMENDER:
            raise ValueError(f"'{kind}' is a recommender; it cannot play the {ctx.role.value}")
        if not ctx.arg:
            raise ValueError(f"'{kind}' needs {what}: {kind}:{what.upper().replace(' ', '_')}")
        return getattr(mod, cls_name)(ctx.arg, catalogue=ctx.catalogue, seed=ctx.seed)

    return build


register_agent_kind("unicrs", AgentKind(
    _recommender_only("unicrs", "UniCRSRecommender", "checkpoint dir", "agents.unicrs"),
    description="UniCRS recommender from 'interplay train-unicrs': unicrs:CKPT_DIR (runs in the agent host)"))
register_agent_kind("popular", AgentKind(
    _recommender_only("popular", "PopularityRecommender", "data dir", "agents.popularity"),
    description="popularity baseline: the train split's most recommended items, popular:DATA_DIR"))
register_agent_kind("retrieval", AgentKind(
    _recommender_only("retrieval", "RetrievalRecommender", "data dir", "agents.retrieval"),
    description="retrieval baseline: the top candidate retrieved from the user's words (interplay.candidates), "
                "retrieval:DATA_DIR"))
