"""The built-in parts of a user evaluation (:mod:`interplay.evaluation.parts`), in scorecard order:

- ``human``: the agent's decision on every item a real user accepted or rejected (decisions per slice);
- ``probe``: counterfactual probe items (:mod:`interplay.evaluation.probes`);
- ``nll``: the likelihood of the real user turns under the agent's model;
- ``replay``: whole episodes against the recorded recommender turns (SR / ET / FR, behaviour, faults);
- ``single``: one generated reply per recorded user turn (BERTScore, Dist-4, words); not in the scorecard.
"""

from __future__ import annotations

import json
from pathlib import Path

from interplay.evaluation.parts import EvalPart, PartContext, ScorecardColumn, TurnPart, register_part, write_csv
from interplay.evaluation.scorecard import (
    decisions_section,
    discrimination_section,
    likelihood_section,
    replay_section,
)

REPLAY_DIR = "replay"
SINGLE_FILE = "single_turn.jsonl"
HUMAN_FILE = "human_view.jsonl"
PROBE_FILE = "probe.jsonl"
NLL_FILE = "user_turn_nll.jsonl"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _with_accept(rows: list[dict]) -> list[dict]:
    return [{**r, "accept": r["action"] == "accept"} for r in rows]


# -- human: decisions on the items people judged ---------------------------------------------------

def _human_tasks(ctx: PartContext):
    from interplay.evaluation.tasks import human_decision_tasks

    return human_decision_tasks(ctx.records, ctx.grounding)


def _human_summary(ctx: PartContext, rows: list[dict]) -> dict:
    from interplay.evaluation.agent_report import human_view_metrics

    return human_view_metrics(rows)


def _human_card(folder: Path, metrics: dict, records: list) -> dict:
    from interplay.metrics.fidelity import sliced_decision_figures

    return {"decisions": sliced_decision_figures(_with_accept(_rows(folder / HUMAN_FILE))),
            "decision_method": metrics["human_view"].get("decision_method"),
            "accept_threshold": metrics["settings"].get("accept_threshold")}


def _decision(key: str, slice_: str = "all"):
    return lambda a: a["decisions"][slice_].get(key)


HUMAN = TurnPart(
    name="human", description="real-human view: the agent's decision on each item a person accepted or rejected",
    label="human-judged items", metrics_key="human_view", build=_human_tasks, summary=_human_summary,
    file=HUMAN_FILE, ask="decide", csv="human_view.csv", empty={"n": 0}, scorecard=True, card=_human_card,
    section=decisions_section,
    columns=(ScorecardColumn("bal. acc. (all)", _decision("balanced_accuracy"), reference=0.5),
             ScorecardColumn("bal. acc. (other unseen)", _decision("balanced_accuracy", "other-unseen"), reference=0.5),
             ScorecardColumn("kappa (all)", _decision("kappa"), lo=-1, reference=0.0),
             ScorecardColumn("reject F1 (all)", _decision("reject_f1"), reference=0.0)))


# -- probe: counterfactual items -------------------------------------------------------------------

def _probe_tasks(ctx: PartContext):
    """The counterfactual-discrimination tasks (popular: the data folder's train split, if any)."""
    from agents.popularity import popularity_ranking
    from interplay.data.build import default_data_root
    from interplay.data.co_ratings import CoRatings
    from interplay.data.movielens import ML_SMALL
    from interplay.evaluation.probes import probe_tasks

    cfg = ctx.cfg
    popular = popularity_ranking(str(Path(cfg.data).resolve())) if (Path(cfg.data) / "train.jsonl").exists() else []
    ratings = default_data_root() / ML_SMALL / "ratings.csv"
    co = CoRatings.from_movielens(default_data_root()) if ratings.is_file() else None
    return probe_tasks(ctx.records, ctx.catalogue, cfg.grounded, popular, seed=cfg.seed, co_ratings=co)


def _probe_summary(ctx: PartContext, rows: list[dict]) -> dict:
    from interplay.evaluation.probes import discrimination

    return discrimination(_with_accept(rows))


def _probe_card(folder: Path, metrics: dict, records: list) -> dict:
    from interplay.evaluation.probes import hint_use

    return {"discrimination": metrics.get("discrimination"),
            "hint_use": hint_use(metrics.get("agent_training"), metrics["agent"])}


class _ProbePart(TurnPart):
    def write(self, ctx: PartContext, results: list, summary, plots: bool) -> None:
        if results:  # no empty probe.csv
            write_csv(ctx.out / "probe.csv", results)


PROBE = _ProbePart(
    name="probe", description="counterfactual discrimination: items built to match or contradict the target",
    label="probe recommendations", metrics_key="discrimination", build=_probe_tasks, summary=_probe_summary,
    file=PROBE_FILE, ask="decide", scorecard=True, card=_probe_card, section=discrimination_section,
    columns=(ScorecardColumn("disjoint gap (co-liked - co-disliked)",
                             lambda a: (a["discrimination"] or {}).get("disjoint_gap"), lo=-1, reference=0.0),))


# -- nll: the likelihood of the real user turns ----------------------------------------------------

def _user_turns(ctx: PartContext):
    return ctx.user_turns


def _nll_summary(ctx: PartContext, rows: list[dict]) -> dict:
    from interplay.evaluation.agent_report import user_turn_nll

    return user_turn_nll(rows)


NLL = TurnPart(
    name="nll", description="likelihood of the real user turns under the agent's model",
    label="likelihood of real user turns", metrics_key="user_turn_nll", build=lambda ctx: (_user_turns(ctx)[0], {}),
    summary=_nll_summary, file=NLL_FILE, ask="likelihood", scorecard=True,
    card=lambda folder, metrics, records: {"likelihood": metrics.get("user_turn_nll")}, section=likelihood_section)


# -- single: one generated reply per recorded user turn --------------------------------------------

def _single_summary(ctx: PartContext, rows: list[dict]) -> dict:
    from interplay.evaluation.agent_report import single_turn_metrics
    from interplay.metrics.bertscore import BERTScoreSettings

    return single_turn_metrics(rows, BERTScoreSettings(ctx.cfg.bertscore_model, ctx.cfg.bertscore_layers))[0]


SINGLE = TurnPart(
    name="single", description="one generated reply per recorded user turn (BERTScore, Dist-4, words)",
    label="single-turn replies", metrics_key="single_turn", build=_user_turns, summary=_single_summary,
    file=SINGLE_FILE, csv="single_turn.csv", empty={"n": 0})  # rows gain bertscore_f1 in the summary


# -- replay: whole episodes against the recorded recommender ---------------------------------------

class ReplayPart(EvalPart):
    """Replay episodes: the user under test against the record's recommender turns, in a
    :class:`~environments.recommendation_env.RecommendationEnv`; logged as episodes."""

    name = "replay"
    description = "replay episodes against the recorded recommender (SR / ET / FR, behaviour, faults)"
    label = "replay episodes"
    metrics_key = "replay"
    empty = {"episodes": 0}
    scorecard = True
    section = staticmethod(replay_section)

    def open(self, ctx: PartContext):
        from interplay.episode_log import EpisodeLogWriter

        return EpisodeLogWriter(ctx.out / REPLAY_DIR)

    def tasks(self, ctx: PartContext):
        from interplay.evaluation.tasks import replay_tasks

        return replay_tasks(ctx.records)

    def done(self, log, tasks: list) -> int:
        return len(log.existing_ids() & {t.episode_id for t in tasks})

    async def run(self, ctx: PartContext, host, tasks: list, log, advance) -> None:
        from interplay.evaluation.runner import run_replays

        cfg = ctx.cfg
        await run_replays(host, tasks, log, log.existing_ids(), str(cfg.agent), cfg.max_retries, cfg.concurrency,
                          cfg.seed, advance, ctx.grounding, ctx.catalogue)

    def results(self, ctx: PartContext, log, tasks: list) -> list:
        from interplay.episode_log import latest_episodes

        ids = {t.episode_id for t in tasks}
        path = ctx.out / REPLAY_DIR / "episodes.jsonl"
        return [e for e in latest_episodes(path) if e.episode_id in ids] if path.exists() else []

    def summarize(self, ctx: PartContext, results: list):
        from interplay.evaluation.agent_report import replay_metrics

        return replay_metrics(results) if results else self.empty

    def write(self, ctx: PartContext, results: list, summary, plots: bool) -> None:
        from interplay.evaluation.agent_report import _turns_and_actions, plot_outcomes
        from interplay.evaluation.run_report import episode_row

        write_csv(ctx.out / "episodes.csv", [episode_row(e) for e in results])
        if plots and results:
            plot_outcomes({str(ctx.cfg.agent): {"replay": summary}}, ctx.out / "outcomes.png")
            _turns_and_actions(results, {}, ctx.out)

    def card(self, folder: Path, metrics: dict, records: list) -> dict:
        from interplay.episode_log import latest_episodes
        from interplay.evaluation.behaviour_profile import behaviour_profile
        from interplay.evaluation.simulator_faults import simulator_fault_rate

        path = folder / REPLAY_DIR / "episodes.jsonl"
        episodes = list(latest_episodes(path)) if path.exists() else []
        return {"behaviour": behaviour_profile(episodes, records), "simulator_faults": simulator_fault_rate(episodes),
                "replay": {k: metrics["replay"].get(k) for k in ("episodes", "SR", "ET", "FR")}}


BUILT_IN: tuple[EvalPart, ...] = (HUMAN, PROBE, NLL, ReplayPart(), SINGLE)
for _part in BUILT_IN:
    register_part(_part, replace=True)
