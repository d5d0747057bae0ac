"""Agent specs (``rule``, ``llm``, ``llm:PATH_OR_ID``, ``py:module:Class``) and their registry.

A spec names an agent kind and an optional argument. Each kind says which model (if any) its
agents need, so the runtime can start one model server per distinct model and share it, and how
to build an agent for a role. New kinds are added with :func:`register_agent_kind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interplay.agent import Agent
from interplay.backends.base import GenerationBackend, GenerationParams
from interplay.backends.default_model import DEFAULT_MODEL
from interplay.catalogue import Catalogue
from interplay.protocol import Role


@dataclass(frozen=True)
class AgentSpec:
    """``KIND`` or ``KIND:ARG``; only the first colon splits."""

    kind: str
    arg: str | None = None

    @classmethod
    def parse(cls, text: str) -> "AgentSpec":
        kind, sep, arg = text.strip().partition(":")
        if not kind:
            raise ValueError(f"empty agent spec {text!r}")
        if kind not in AGENT_KINDS:
            _load_entry_points()
        if kind not in AGENT_KINDS:
            raise ValueError(f"unknown agent kind {kind!r} in spec {text!r}; known: {', '.join(sorted(AGENT_KINDS))}")
        if sep and not arg:
            raise ValueError(f"agent spec {text!r} has a ':' but no argument")
        return cls(kind, arg or None)

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


@dataclass
class AgentContext:
    """What a builder gets when an agent is created for one episode."""

    role: Role
    arg: str | None
    catalogue: Catalogue
    seed: int
    params: GenerationParams
    backend: GenerationBackend | None = None
    tokenizer: Any = None


@dataclass
class AgentKind:
    """How to build agents of one kind. ``model(arg)`` is the model they generate with, or None."""

    build: Callable[[AgentContext], Agent]
    model: Callable[[str | None], str | None] = field(default=lambda arg: None)
    description: str = ""
    backend: str = "transformers"  # a name in interplay.backends.registry.BACKENDS
    recommender_sees_persona: bool = False  # prompted baselines get the persona as recommender


AGENT_KINDS: dict[str, AgentKind] = {}
ENTRY_POINT_GROUP = "interplay.agents"


def _load_entry_points() -> None:
    """Register the kinds that installed packages declare under the ``interplay.agents`` entry
    point group (an :class:`AgentKind`), so they exist in every Ray worker too."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in AGENT_KINDS:
            register_agent_kind(ep.name, ep.load())


def register_agent_kind(name: str, kind: AgentKind) -> None:
    """Make ``name`` usable in specs (``--user name:arg``)."""
    AGENT_KINDS[name] = kind


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


def _build_llm(ctx: AgentContext) -> Agent:
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


def _build_py(ctx: AgentContext) -> Agent:
    cls = import_agent_class(ctx.arg or "")
    if cls.role is not ctx.role:
        raise ValueError(f"{ctx.arg} is a {cls.role.value} agent, used as {ctx.role.value}")
    return cls(catalogue=ctx.catalogue, seed=ctx.seed)


register_agent_kind("rule", AgentKind(_build_rule, description="rule-based user / recommender; rule:T for the user "
                                     "accepts an item covering at least T of its target attributes (default 0.6; "
                                     "rule:0 accepts every recommendation, the yes-sayer floor)"))
register_agent_kind(
    "llm",
    AgentKind(_build_llm, model=lambda arg: arg or DEFAULT_MODEL,
              description="LLM simulator on a HF model id or path (default: SmolLM2-135M-Instruct)"),
)
register_agent_kind("py", AgentKind(_build_py, description="your own Agent subclass: py:module:ClassName"))


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


def training_config(checkpoint: str | None) -> dict:
    """The ``config`` a checkpoint of ``interplay train`` was trained with (empty if none)."""
    import json
    from pathlib import Path

    path = Path(checkpoint or "") / "interplay_training.json"
    return json.loads(path.read_text()).get("config", {}) if path.is_file() else {}


#: the recipe settings an evaluation records about the checkpoint it evaluated
RECIPE_KEYS = ("role", "data", "epochs", "grounded", "grounding_match", "action_loss_weight", "counterfactual_negatives",
               "decision_examples", "whole_dialogues", "recommender_candidates", "model", "max_train_records",
               "prompt_layout")


def agent_training(spec: str) -> dict | None:
    """What the spec's checkpoint was trained on, for the record of an evaluation: the recipe
    settings, and the training data's source (``simulated`` when it was built from episode logs)
    and train record count from its ``build.json`` (capped by ``max_train_records``). For
    simulated data, ``simulated_by`` names the user and recommender agents of the run the episodes
    came from (its ``config.json``). None for an agent without a training record (a prompted
    model, a rule)."""
    import json
    from pathlib import Path

    parsed = AgentSpec.parse(spec)
    model = model_of(parsed)
    config = training_config(model) if model else {}
    if not config:
        return None
    out = {k: config.get(k) for k in RECIPE_KEYS}
    build = Path(config.get("data") or "") / "build.json"
    if build.is_file():
        info = json.loads(build.read_text())
        out["data_source"] = info.get("source")
        out["train_records"] = (info.get("records") or {}).get("train")
        if out["train_records"] is not None and config.get("max_train_records"):
            out["train_records"] = min(out["train_records"], config["max_train_records"])
        if info.get("source") == "episodes":
            runs = [Path(p) / "config.json" for p in info.get("paths") or []]
            out["simulated_by"] = [{k: json.loads(r.read_text()).get(k) for k in ("user", "recommender")}
                                   for r in runs if r.is_file()]
    out["simulated"] = out.get("data_source") == "episodes"
    return out


def trained_grounded(checkpoint: str | None) -> bool:
    """Whether a checkpoint was trained on grounded user observations (checkpoints from before
    grounding existed were not)."""
    config = training_config(checkpoint)
    return bool(config.get("grounded", False)) and config.get("role") == Role.USER.value


def trained_prompt_layout(checkpoint: str | None) -> int:
    """The header layout a checkpoint was trained on (1 for checkpoints from before layouts were
    recorded; see :data:`interplay.training.serialize.PROMPT_LAYOUTS`)."""
    return int(training_config(checkpoint).get("prompt_layout", 1))


def trained_candidates(checkpoint: str | None) -> bool:
    """Whether a RecSim checkpoint was trained with candidates in its prompt."""
    config = training_config(checkpoint)
    return config.get("recommender_candidates", 0) > 0 and config.get("role") == Role.RECOMMENDER.value


def _checkpoint(role: Role):
    """The checkpoint of a fine-tuned spec: its argument, else the simulator shipped for ``role``."""
    def model(arg: str | None) -> str:
        if arg:
            return arg
        from interplay.simulators import shipped_simulator

        return str(shipped_simulator(role))

    return model


register_agent_kind("usersim", AgentKind(_fine_tuned(Role.USER), model=_checkpoint(Role.USER),
                                         description="UserSim checkpoint (or LoRA adapter) from 'interplay train "
                                                     "--role user'; bare 'usersim': the one shipped with the package"))
register_agent_kind("usersim-nomatch", AgentKind(_fine_tuned(Role.USER, match_counts=False),
                                                 model=_checkpoint(Role.USER),
                                                 description="a UserSim checkpoint with the match counts ('Matches 2 "
                                                             "of your 6 wishes') left out of its prompt"))
register_agent_kind("recsim", AgentKind(_fine_tuned(Role.RECOMMENDER), model=_checkpoint(Role.RECOMMENDER),
                                        description="RecSim checkpoint (or LoRA adapter) from 'interplay train --role "
                                                    "recommender'; bare 'recsim': the one shipped with the package"))


def _split_http(arg: str | None) -> tuple[str | None, str | None]:
    """``MODEL@http://host:port/v1`` -> (MODEL, URL); anything else -> (arg, None)."""
    if arg and "@http" in arg:
        model, _, url = arg.partition("@")
        if not model:
            raise ValueError(f"zero-shot spec needs a model name before '@': {arg!r}")
        return model, url
    return arg, None


_HTTP_BACKENDS: dict[tuple[str, str], object] = {}


def http_backend(url: str, model: str):
    """One OpenAI-compatible client per (server, model) in this process. Settings from the
    environment: INTERPLAY_HTTP_TIMEOUT (s, default 120), INTERPLAY_HTTP_RETRIES (3),
    INTERPLAY_HTTP_CONCURRENCY (8), INTERPLAY_API_KEY_ENV (name of the key's variable, OPENAI_API_KEY)."""
    import os

    from interplay.backends.registry import create_backend

    key = (url, model)
    if key not in _HTTP_BACKENDS:
        _HTTP_BACKENDS[key] = create_backend(
            "openai", model, base_url=url, api_key_env=os.environ.get("INTERPLAY_API_KEY_ENV", "OPENAI_API_KEY"),
            timeout_s=float(os.environ.get("INTERPLAY_HTTP_TIMEOUT", 120)),
            max_retries=int(os.environ.get("INTERPLAY_HTTP_RETRIES", 3)),
            max_concurrency=int(os.environ.get("INTERPLAY_HTTP_CONCURRENCY", 8)))
    return _HTTP_BACKENDS[key]


def _zero_shot_model(arg: str | None) -> str | None:
    from interplay.backends.presets import resolve

    model, url = _split_http(arg)
    if url is not None:
        return None  # served elsewhere: no local model server
    return resolve(model)[0] or DEFAULT_MODEL


def _build_zero_shot(ctx: AgentContext) -> Agent:
    from agents.zero_shot import ZeroShotRecommender, ZeroShotUser
    from interplay.backends.presets import resolve

    model, url = _split_http(ctx.arg)
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


def sees_persona(recommender_spec: str | AgentSpec, flag: bool = False) -> bool:
    """Whether the recommender gets the persona: asked for, or a prompted-baseline kind."""
    spec = recommender_spec if isinstance(recommender_spec, AgentSpec) else AgentSpec.parse(recommender_spec)
    return flag or AGENT_KINDS[spec.kind].recommender_sees_persona


def model_of(spec: AgentSpec) -> str | None:
    """The model the spec's agents generate with, or None."""
    return AGENT_KINDS[spec.kind].model(spec.arg)


def backend_of(spec: AgentSpec) -> str:
    """The backend the spec's model runs on."""
    return AGENT_KINDS[spec.kind].backend


def _looks_like_path(model: str) -> bool:
    """A local folder rather than a hub id (``org/name``): absolute, ``./``, ``~``, or deeper."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or Path(model).exists()


def check_agent_spec(text: str | AgentSpec, role: Role) -> AgentSpec:
    """Parse ``text`` (unless given parsed) and check, before any run starts, what can be checked without loading a
    model: a ``py:`` class imports, is an Agent and plays ``role``; a model given as a local
    folder exists and holds a ``config.json``. Raises ValueError with one clear line."""
    spec = text if isinstance(text, AgentSpec) else AgentSpec.parse(text)
    text = str(spec)
    if spec.kind == "py":
        try:
            cls = import_agent_class(spec.arg or "")
        except ImportError as exc:
            raise ValueError(f"agent spec {text!r}: cannot import {(spec.arg or '').partition(':')[0]!r} "
                             f"({exc})") from None
        if cls.role is not role:
            raise ValueError(f"agent spec {text!r}: a {cls.role.value} agent, given as the {role.value}")
    if spec.kind == "rule" and spec.arg:
        try:
            rule_threshold(role, spec.arg)
        except ValueError as exc:
            raise ValueError(f"agent spec {text!r}: {exc}") from None
    model = model_of(spec)
    if model and backend_of(spec) == "transformers" and (_looks_like_path(model) or spec.kind in (
            "usersim", "usersim-nomatch", "recsim")):
        folder = Path(model).expanduser()
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            what = "no such folder" if not folder.exists() else "no config.json in it"
            raise ValueError(f"agent spec {text!r}: model {model}: {what} (expected a checkpoint or "
                             "adapter of 'interplay train' or a Hugging Face model folder)")
    return spec


def build_agent(spec: AgentSpec, ctx: AgentContext) -> Agent:
    """A fresh agent for one episode."""
    agent = AGENT_KINDS[spec.kind].build(ctx)
    if agent.role is not ctx.role:
        raise ValueError(f"spec {spec} built a {agent.role.value} agent for the {ctx.role.value} role")
    return agent


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
