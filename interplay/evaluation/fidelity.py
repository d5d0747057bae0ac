"""``interplay evaluate fidelity``: one scorecard judging user simulators against people.

For each user agent, on the same real dialogues: an ``evaluate user`` run with the scorecard's
parts (:func:`interplay.evaluation.parts.scorecard_parts`; built in: human, probe, nll, replay) in
``OUT/<agent>/`` (resumable), then from its logs each part's card fields: decisions per slice
(:mod:`interplay.metrics.fidelity`), counterfactual discrimination
(:mod:`interplay.evaluation.probes`), the likelihood of the real user turns under the agent's
model, the behaviour profile vs people (:mod:`interplay.evaluation.behaviour_profile`) and the
simulator-fault rate (:mod:`interplay.evaluation.simulator_faults`). Writes ``scorecard.json``, ``scorecard.md`` and
``scorecard.png``. Every input is checked before anything is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from interplay.evaluation.config import EvalConfig
from interplay.evaluation.parts import check_parts, scorecard_parts
from interplay.evaluation.scorecard import plot_scorecard, scorecard_markdown
from interplay.evaluation.user_parts import BUILT_IN
from interplay.run_checkpoints import recorded_checkpoint

SCORECARD = "scorecard"
#: the built-in scorecard parts (with the registered ones: interplay.evaluation.parts.scorecard_parts)
PARTS = [p.name for p in BUILT_IN if p.scorecard]


class FidelityConfig(BaseModel):
    """What the scorecard compares and how each user agent's decisions are read."""

    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(min_length=1, description="user agent specs to compare (rule, llm, usersim:CKPT, py:...)")
    data: str = Field(description="a folder from 'interplay data build' with human decisions and catalogue attributes")
    split: str = Field("test", description="split to evaluate on")
    out: str = Field(description="scorecard folder (one evaluation folder per user agent inside)")
    limit: int | None = Field(None, ge=1, description="only the first N records (None: all)")
    decision: str = Field("score", description="score (P(accept), LLM agents) or generate")
    accept_thresholds: list[float] = Field(default_factory=list, description="per user agent, in order (one value: "
                                           "all); default: each checkpoint's calibrated threshold, else 0.5")
    downstream: list[str] = Field(default_factory=list, description="finished recommender evaluations of RecSims "
                                  "trained on dialogues simulated with each user agent (and on real ones), for the "
                                  "downstream-utility table (experiments/downstream_utility.sh)")
    parts: list[str] = Field(default_factory=lambda: [p.name for p in scorecard_parts()], description="the evaluation parts to run "
                             "(human decisions first on a slow machine; an agent folder holding more parts keeps them)")
    seed: int = 0
    concurrency: int = 16
    repetition_controls: bool = Field(False, description="decode the generated parts (replays) with the "
                                      "simulation's repetition controls (interplay.runtime.role_decoding), still "
                                      "greedy; each agent's folder and name get '+controls'")


    @field_validator("parts")
    @classmethod
    def _known_parts(cls, v: list[str]) -> list[str]:
        return check_parts(v, scorecard=True)


#: what an agent's folder and scorecard name carry when it decoded with the repetition controls
CONTROLS_SUFFIX = "+controls"


def agent_folder(spec: str, controls: bool = False) -> str:
    """A folder name for an agent spec (``usersim:runs/ckpt/x`` -> ``usersim-runs-ckpt-x``), with
    :data:`CONTROLS_SUFFIX` when it decodes with the simulation's repetition controls."""
    return (re.sub(r"[^A-Za-z0-9._=-]+", "-", spec).strip("-") or "agent") + (CONTROLS_SUFFIX if controls else "")


def check_inputs(cfg: FidelityConfig) -> tuple[list, object]:
    """The records and catalogue, after checking every user spec, that the split has human
    decisions, and that the catalogue has attributes (ValueError naming what is wrong)."""
    from interplay.agent_specs import check_agent_spec
    from interplay.data.build import read_catalogue, read_records
    from interplay.evaluation.tasks import human_decision_tasks
    from interplay.protocol import Role

    for spec in cfg.users:
        check_agent_spec(spec, Role.USER)
    if len(cfg.accept_thresholds) not in (0, 1, len(cfg.users)):
        raise ValueError(f"{len(cfg.accept_thresholds)} accept thresholds for {len(cfg.users)} user agents "
                         "(give none, one, or one per --user)")
    records = read_records(cfg.data, cfg.split)
    if not records:
        raise ValueError(f"{cfg.data}: no record in split {cfg.split!r}")
    records = records[: cfg.limit] if cfg.limit else records
    if not human_decision_tasks(records)[0]:
        raise ValueError(f"{cfg.data} split {cfg.split!r}: no human accept/reject decision to compare with "
                         "(no record has an accepted or rejected recommended item)")
    catalogue = read_catalogue(cfg.data)
    if not any(item.attributes for item in catalogue):
        raise ValueError(f"{Path(cfg.data) / 'catalogue.jsonl'}: no item has attributes (genres, keywords); the "
                         "probes and grounded decisions need them (build the data with the keyword catalogue)")
    return records, catalogue


def threshold_of(cfg: FidelityConfig, i: int) -> float | None:
    """The i-th user's threshold; None (none given): its checkpoint's calibrated one, else 0.5."""
    t = cfg.accept_thresholds
    return None if not t else (t[0] if len(t) == 1 else t[i])


def agent_eval_config(cfg: FidelityConfig, i: int) -> EvalConfig:
    """The ``evaluate user`` settings of the i-th agent: ``cfg.parts``, plus any part its folder
    already ran (a resumed evaluation may add parts, never drop them)."""
    import json

    from interplay.backends.base import GenerationParams
    from interplay.runtime.role_decoding import with_simulation_controls

    spec = cfg.users[i]
    out = Path(cfg.out) / agent_folder(spec, cfg.repetition_controls)
    held = json.loads((out / "config.json").read_text()).get("parts", []) if (out / "config.json").is_file() else []
    parts = [p.name for p in scorecard_parts() if p.name in cfg.parts or p.name in held]
    return EvalConfig(kind="user", agent=spec, data=cfg.data, split=cfg.split, limit=cfg.limit,
                      out=str(out), parts=parts, decision=cfg.decision,
                      accept_threshold=threshold_of(cfg, i), seed=cfg.seed, concurrency=cfg.concurrency,
                      generation=with_simulation_controls(GenerationParams()) if cfg.repetition_controls
                      else GenerationParams())


def decoded_with_controls(folder: Path) -> bool:
    """Whether the evaluation in ``folder`` decoded with repetition controls (its ``config.json``)."""
    from interplay.backends.base import GenerationParams

    saved = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    return GenerationParams.model_validate(saved.get("generation") or {}).repetition_controls_on


def agent_card(folder: Path, records) -> dict:
    """The scorecard row of one finished user evaluation folder: each scorecard part's fields; an
    agent that decoded with repetition controls is named with :data:`CONTROLS_SUFFIX`."""
    from interplay.evaluation.parts import scorecard_parts

    metrics = json.loads((folder / "metrics.json").read_text())
    controls = decoded_with_controls(folder)
    card = {"agent": metrics["agent"] + (CONTROLS_SUFFIX if controls else ""), "folder": str(folder),
            "repetition_controls": controls, "checkpoint": recorded_checkpoint(folder, metrics["agent"])}
    for part in scorecard_parts():
        if part.card is not None:
            card.update(part.card(folder, metrics, records))
    return card


def evaluate_fidelity(cfg: FidelityConfig, resume: bool = False, ray_address: str | None = None,
                      progress: bool = True) -> dict:
    """Run (or resume) each user agent's evaluation, then write the scorecard."""
    from interplay.evaluation.evaluate import evaluate_user
    from interplay.run_folder import write_json_atomic

    records, _ = check_inputs(cfg)
    from interplay.evaluation.downstream import downstream_rows

    downstream = downstream_rows(cfg.downstream, cfg.seed)  # bad folders fail before any work
    configs = [agent_eval_config(cfg, i) for i in range(len(cfg.users))]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cards = []
    for ecfg in configs:
        folder = Path(ecfg.out)
        evaluate_user(ecfg, resume=resume or folder.exists(), ray_address=ray_address, progress=progress)
        cards.append(agent_card(folder, records))
    card = {"config": cfg.model_dump(mode="json"), "agents": cards, "downstream": downstream}
    write_json_atomic(out / f"{SCORECARD}.json", card)
    (out / f"{SCORECARD}.md").write_text(scorecard_markdown(card))
    plot_scorecard(card, out / f"{SCORECARD}.png")
    return card
