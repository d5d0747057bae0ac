"""The one place an episode's rules (:class:`~environments.episode_core.EnvConfig`) are assembled
from a run's settings: simulations, evaluations' replays, the studio's talk and sample runs."""

from __future__ import annotations

from environments.episode_core import EnvConfig
from interplay.agent_specs import AgentSpec, sees_persona
from interplay.catalogue import Catalogue
from interplay.protocol import Role


def env_config(*, max_turns: int, recommender: AgentSpec | None = None, recommender_sees_persona: bool = False,
               first_speaker: Role = Role.USER, max_retries: int = 2, catalogue: Catalogue | None = None,
               grounded: bool = False, candidates=None, candidates_k: int = 0) -> EnvConfig:
    """An episode's rules. The recommender sees the persona when asked (``recommender_sees_persona``)
    or when ``recommender`` is a prompted-baseline kind (:func:`~interplay.agent_specs.sees_persona`);
    a person or a replay in the recommender's seat (``recommender=None``) only when asked.
    ``grounded``: the user reads the catalogue facts of recommended items; ``catalogue`` also
    resolves logged titles to ids."""
    persona = sees_persona(recommender, recommender_sees_persona) if recommender is not None \
        else recommender_sees_persona
    return EnvConfig(max_turns=max_turns, first_speaker=first_speaker, max_retries=max_retries,
                     recommender_sees_persona=persona, grounding=catalogue if grounded else None, catalogue=catalogue,
                     candidates=candidates, candidates_k=candidates_k)
