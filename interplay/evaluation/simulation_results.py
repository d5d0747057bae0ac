"""Finished ``interplay simulate`` runs on a data split as docs result files
(:mod:`interplay.results_docs`): outcomes (SR / ET / FR, the termination mix, turns per dialogue)
and behaviour figures per role (:mod:`interplay.metrics.behaviour`) beside the same figures of the
human dialogues whose personas and targets the run used. Intervals: 95% bootstrap over dialogues
(a dialogue's turns resampled together)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from interplay.metrics.behaviour import ROLE_FIGURES, episode_dialogue, record_dialogue, turn_values
from interplay.metrics.fidelity import paired_bootstrap
from interplay.protocol import Role
from interplay.results_docs import Column, ResultsError, ResultTable
from interplay.run_checkpoints import recorded_checkpoint


def _share(flags: list[bool]) -> dict | None:
    """The share of true flags, with its bootstrap interval over dialogues."""
    if not flags:
        return None
    ci = paired_bootstrap(lambda a: a.mean(axis=1), [float(f) for f in flags])
    return {"value": sum(flags) / len(flags), "ci95": list(ci) if ci else None, "n": len(flags)}


def _mean_over_dialogues(per_dialogue: list[list[float | None]]) -> dict | None:
    """The mean over every value of every dialogue, with a dialogue-cluster bootstrap interval;
    n: the values (turns) it is read from."""
    import numpy as np

    values, clusters = [], []
    for i, vals in enumerate(per_dialogue):
        for v in vals:
            if v is not None:
                values.append(float(v))
                clusters.append(i)
    if not values:
        return None
    ci = paired_bootstrap(lambda a: float(np.mean(a)) if len(a) else float("nan"), values, clusters=clusters)
    return {"value": sum(values) / len(values), "ci95": list(ci) if ci else None, "n": len(values)}


def _run(run_dir: Path, people: tuple[str, str] | None = None) -> tuple[dict, list, list]:
    """A finished run's config, its episodes and the records of its data split, or with ``people``
    (data folder, split) for a run on data without human dialogues (the embedded demo set), those
    records (ResultsError naming the file when the run or its data cannot be read)."""
    from interplay.data.build import read_records
    from interplay.episode_log import latest_episodes

    cfg_path, log = run_dir / "config.json", run_dir / "episodes.jsonl"
    for path in (cfg_path, log):
        if not path.is_file():
            raise ResultsError(f"{path}: missing (a finished 'interplay simulate' run folder is expected)")
    config = json.loads(cfg_path.read_text())
    if people is None and not Path(config["data"]).is_dir():
        raise ResultsError(f"{cfg_path}: data {config['data']!r} is not a built data folder (no human dialogues "
                           "to compare with; name some with --people DATA:SPLIT)")
    episodes = list(latest_episodes(log))
    if not episodes:
        raise ResultsError(f"{log}: no episode")
    if people is not None:
        if not (Path(people[0]) / f"{people[1]}.jsonl").is_file():
            raise ResultsError(f"--people {people[0]}:{people[1]}: no {Path(people[0]) / (people[1] + '.jsonl')}")
        return config, episodes, read_records(*people)
    return config, episodes, read_records(config["data"], config["split"])


def _behaviour_rows(label: str, dialogues: list, checkpoints: dict[Role, str], threshold: float | None) -> list[dict]:
    """One row per role: its figures, the checkpoint of the agent that played it (the threshold is
    the user's)."""
    rows = []
    for role in Role:
        values = [turn_values(d, role) for d in dialogues]
        rows.append({"dialogues": label, "role": role.value, "checkpoint": checkpoints[role],
                     "threshold": threshold if role is Role.USER else None,
                     **{k: _mean_over_dialogues([v[k] for v in values]) for k in ROLE_FIGURES}})
    return rows


def simulation_results(run_dirs: list[Path], command: str, notes: list[str] | None = None,
                       measured: dt.date | None = None, people: tuple[str, str] | None = None
                       ) -> tuple[ResultTable, ResultTable]:
    """The outcomes table and the behaviour table of runs on one data split (refused otherwise),
    beside the human dialogues of the records they used; with ``people`` (data folder, split),
    beside every human dialogue of that split instead (runs on data without any, e.g. the demo)."""
    from interplay.agent_specs import AgentSpec, model_of
    from interplay.decision_calibration import calibrated_threshold
    from interplay.metrics.core import outcome_class

    if not run_dirs:
        raise ResultsError("no run folders given")
    runs = [(Path(d), *_run(Path(d), people)) for d in run_dirs]
    sets = {(c["data"], c["split"]) for _, c, _, _ in runs}
    if len(sets) != 1:
        raise ResultsError(f"the runs simulate different data or splits: {sorted(sets)}")
    data, split = sets.pop()
    outcome_rows, behaviour_rows, used = [], [], set()
    for run_dir, config, episodes, records in runs:
        user = config["user"]
        model = model_of(AgentSpec.parse(user))
        threshold = calibrated_threshold(model) if model and Path(model).is_dir() else None
        outcomes = [outcome_class(e) for e in episodes]
        hashes = {Role.USER: recorded_checkpoint(run_dir, user),
                  Role.RECOMMENDER: recorded_checkpoint(run_dir, config["recommender"])}
        label = f"simulated: {user} / {config['recommender']}"
        outcome_rows.append({
            "dialogues": label, "episodes": len(episodes),
            "SR": _share([o == "SR" for o in outcomes]), "ET": _share([o == "ET" for o in outcomes]),
            "FR": _share([o == "FR" for o in outcomes]),
            "cap": _share([e.termination.value == "max_turns" for e in episodes]),
            "errors": _share([e.termination.value not in ("accepted", "max_turns") for e in episodes]),
            "turns": _mean_over_dialogues([[float(e.num_turns)] for e in episodes]),
            "checkpoint": hashes[Role.USER], "recommender_checkpoint": hashes[Role.RECOMMENDER],
            "threshold": threshold})
        behaviour_rows += _behaviour_rows(label, [episode_dialogue(e) for e in episodes], hashes, threshold)
        used |= {e.record_id for e in episodes}
    human = runs[0][3] if people is not None else [r for r in runs[0][3] if r.id in used]
    people_label = f"human ({Path(people[0]).name} {people[1]}, all)" if people is not None else \
        "human (the same records)"
    if human:
        outcome_rows.append({
            "dialogues": people_label, "episodes": len(human),
            "SR": _share([any(d.accept and r.target is not None and d.item_id == r.target.item_id for d in r.decisions)
                          for r in human]),
            "ET": None, "FR": None, "cap": None, "errors": None,
            "turns": _mean_over_dialogues([[float(len(r.turns))] for r in human]),
            "checkpoint": "-", "recommender_checkpoint": "-", "threshold": None})
        behaviour_rows += _behaviour_rows(people_label, [record_dialogue(r) for r in human],
                                          {role: "-" for role in Role}, None)
    figure = dict(format=".3f", show_n=False)
    source = ", ".join(str(d / "episodes.jsonl") for d, *_ in runs)
    common = dict(command=command, data=data, split=split, source=source, measured=measured or dt.date.today())
    outcome = ResultTable(
        title=f"Free simulation on the personas and targets of {Path(data).name} {split}: outcomes", **common,
        columns=[Column(key="dialogues", header="dialogues"), Column(key="episodes", header="n", format="d"),
                 Column(key="SR", header="SR (target accepted)", **figure),
                 Column(key="ET", header="ET (another item accepted)", **figure),
                 Column(key="FR", header="FR (nothing accepted)", **figure),
                 Column(key="cap", header="turn cap reached", **figure),
                 Column(key="errors", header="protocol / agent errors", **figure),
                 Column(key="turns", header="turns per dialogue", format=".2f")],
        rows=outcome_rows,
        notes=["Intervals: 95% bootstrap over dialogues. Items compared by catalogue id. The human row: a person "
               "accepted the record's target (SR) in the recorded dialogue, and its length in turns.",
               *(notes or [])])
    behaviour = ResultTable(
        title=f"Free simulation on {Path(data).name} {split}: behaviour beside the human dialogues", **common,
        columns=[Column(key="dialogues", header="dialogues"), Column(key="role", header="role"),
                 Column(key="repeated_ngram_share", header="repeated 3-grams in a turn", **figure),
                 Column(key="copied_share", header="copied from the partner's turn", **figure),
                 Column(key="self_repeat_rate", header="turn repeating an own earlier turn", **figure),
                 Column(key="words_per_turn", header="words per turn (n turns)", format=".1f", show_n=True)],
        rows=behaviour_rows,
        notes=["Figures of interplay.metrics.behaviour (word 3-grams); each a mean over the role's turns, its "
               "interval a 95% bootstrap over dialogues (a dialogue's turns resampled together).", *(notes or [])])
    return outcome, behaviour


def write_simulation_results(run_dirs: list[Path], name: str, command: str, results: Path = Path("docs/results"),
                             notes: list[str] | None = None, people: tuple[str, str] | None = None) -> list[Path]:
    """Write ``results/NAME.json`` (outcomes) and ``results/NAME-behaviour.json``; returns their paths."""
    outcome, behaviour = simulation_results(run_dirs, command, notes=notes, people=people)
    results.mkdir(parents=True, exist_ok=True)
    paths = [results / f"{name}.json", results / f"{name}-behaviour.json"]
    for table, path in zip((outcome, behaviour), paths):
        path.write_text(table.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return paths


__all__ = ["simulation_results", "write_simulation_results"]
