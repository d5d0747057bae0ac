"""Agent specs (``rule``, ``llm``, ``llm:PATH_OR_ID``, ``py:module:Class``) and their registry.

A spec names an agent kind and an optional argument. Each kind says which model (if any) its
agents need, so the runtime can start one model server per distinct model and share it, and how
to build an agent for a role. New kinds are added with :func:`register_agent_kind`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainSerializer

from interplay.agent import Agent
from interplay.backends.base import GenerationBackend, GenerationParams
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

    def for_role(self, role: Role) -> "AgentSpec":
        """The spec this one stands for when it plays ``role`` (its kind's ``stands_for``: bare
        ``llm`` is the simulator shipped for that role); itself otherwise."""
        kind = agent_kind(self.kind)
        other = kind.stands_for(self.arg, role) if kind.stands_for is not None else None
        return AgentSpec.parse(other) if other else self


#: a config field holding a parsed spec (resolved for its role), saved as its text
SpecField = Annotated[AgentSpec, PlainSerializer(str, return_type=str)]
#: what bare ``llm`` meant in configs saved before it meant the shipped simulators (see
#: :meth:`interplay.runtime.host_settings.HostSettings.read_saved`)
LLM_BEFORE_SHIPPED = "llm:smollm2-135m-instruct"


def parse_spec(value: "str | AgentSpec", role: Role | None = None) -> AgentSpec:
    """``value`` parsed (unless given parsed) and, with ``role``, resolved for that role
    (:meth:`AgentSpec.for_role`): what the configs keep, so a spec is parsed once per run."""
    spec = value if isinstance(value, AgentSpec) else AgentSpec.parse(str(value))
    return spec.for_role(role) if role is not None else spec


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
    #: ``check(arg, role)`` raises ValueError on an argument or role it cannot take, before any run starts
    check: Callable[[str | None, Role], None] | None = None
    #: the roles its agents can play (None: both)
    roles: frozenset[Role] | None = None
    #: its model is a local checkpoint folder of ``interplay train`` (checked to exist up front)
    checkpoint: bool = False
    #: ``stands_for(arg, role)``: the spec this kind's spec means in ``role`` (None: itself)
    stands_for: Callable[[str | None, Role], str | None] | None = None


AGENT_KINDS: dict[str, AgentKind] = {}
ENTRY_POINT_GROUP = "interplay.agents"


def _load_entry_points() -> None:
    """Register the kinds that installed packages declare under the ``interplay.agents`` entry
    point group (an :class:`AgentKind`)."""
    from interplay.plugins import load_entry_points

    load_entry_points(ENTRY_POINT_GROUP, register_agent_kind, AGENT_KINDS)


def agent_kind(name: str) -> AgentKind:
    """The kind called ``name``, loading installed plug-ins when it is not known yet: the agent
    host and the studio build agents from parsed specs, in processes that never parsed them."""
    if name not in AGENT_KINDS:
        _load_entry_points()
    if name not in AGENT_KINDS:
        raise ValueError(f"unknown agent kind {name!r}; known: {', '.join(sorted(AGENT_KINDS))}")
    return AGENT_KINDS[name]


def register_agent_kind(name: str, kind: AgentKind) -> None:
    """Make ``name`` usable in specs (``--user name:arg``)."""
    if not isinstance(kind, AgentKind):
        raise TypeError(f"agent kind {name!r} must be an interplay AgentKind, got {type(kind).__name__}")
    AGENT_KINDS[name] = kind


def sees_persona(recommender_spec: str | AgentSpec, flag: bool = False) -> bool:
    """Whether the recommender gets the persona: asked for, or a prompted-baseline kind."""
    spec = recommender_spec if isinstance(recommender_spec, AgentSpec) else AgentSpec.parse(recommender_spec)
    return flag or agent_kind(spec.kind).recommender_sees_persona


def model_of(spec: AgentSpec) -> str | None:
    """The model the spec's agents generate with, or None."""
    return agent_kind(spec.kind).model(spec.arg)


def backend_of(spec: AgentSpec) -> str:
    """The backend the spec's model runs on."""
    return agent_kind(spec.kind).backend


def _looks_like_path(model: str) -> bool:
    """A local folder rather than a hub id (``org/name``): absolute, ``./``, ``~``, or deeper."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or Path(model).exists()


def role_refusal(spec: AgentSpec, role: Role) -> str | None:
    """Why ``spec`` cannot play ``role`` (its kind's ``roles``), or None when it can."""
    kind = agent_kind(spec.kind)
    if kind.roles is None or role in kind.roles:
        return None
    plays = "/".join(sorted(r.value for r in kind.roles))
    what = "simulator checkpoint" if kind.checkpoint else "agent"
    return f"agent spec {str(spec)!r}: a {plays} {what} cannot play the {role.value}"


def check_agent_spec(text: str | AgentSpec, role: Role) -> AgentSpec:
    """Parse ``text`` (unless given parsed), resolve it for ``role`` (:func:`parse_spec`) and
    check, before any run starts, what can be checked
    without loading a model: the kind's own check of its argument and role (a ``py:`` class
    imports, is an Agent and plays ``role``; a ``rule:`` threshold is a number), the roles it can
    play, and that a model given as a local folder exists and holds a ``config.json`` (or an
    adapter). Returns the resolved spec; raises ValueError with one clear line."""
    from interplay.backends.registry import backend_capabilities

    spec = parse_spec(text, role)
    text = str(spec)
    kind = agent_kind(spec.kind)
    if (refusal := role_refusal(spec, role)) is not None:
        raise ValueError(refusal)
    if kind.check is not None:
        try:
            kind.check(spec.arg, role)
        except ValueError as exc:
            raise ValueError(f"agent spec {text!r}: {exc}") from None
    model = model_of(spec)
    if model and backend_capabilities(backend_of(spec)).local_checkpoints and (_looks_like_path(model) or kind.checkpoint):
        folder = Path(model).expanduser()
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            what = "no such folder" if not folder.exists() else "no config.json in it"
            raise ValueError(f"agent spec {text!r}: model {model}: {what} (expected a checkpoint or "
                             "adapter of 'interplay train' or a Hugging Face model folder)")
    return spec


def build_agent(spec: AgentSpec, ctx: AgentContext) -> Agent:
    """A fresh agent for one episode."""
    agent = agent_kind(spec.kind).build(ctx)
    if agent.role is not ctx.role:
        raise ValueError(f"spec {spec} built a {agent.role.value} agent for the {ctx.role.value} role")
    return agent
