"""``interplay evaluate user`` / ``evaluate recommender``: run the tasks, score, write the report."""

from __future__ import annotations

import asyncio
from collections import Counter

from interplay.agent_specs import check_agent_spec
from interplay.evaluation.config import EvalConfig, prepare_eval_dir
from interplay.evaluation.runner import ResultLog, run_replays, run_turn_tasks
from interplay.evaluation.tasks import (
    human_decision_tasks,
    recommender_turn_tasks,
    replay_tasks,
    user_turn_tasks,
)
from interplay.matchscore.location import matchscore_dir
from interplay.protocol import Action, Role
from interplay.turn_grammar import check_actions

REPLAY_DIR = "replay"
SINGLE_FILE = "single_turn.jsonl"
HUMAN_FILE = "human_view.jsonl"
RECOMMEND_FILE = "recommendations.jsonl"
PROBE_FILE = "probe.jsonl"
NLL_FILE = "user_turn_nll.jsonl"


def _records(cfg: EvalConfig):
    from interplay.data.build import read_catalogue, read_records

    records = read_records(cfg.data, cfg.split)
    if not records:
        raise ValueError(f"{cfg.data}: no record in split {cfg.split!r}")
    return (records[: cfg.limit] if cfg.limit else records), read_catalogue(cfg.data)


def _progress(disable: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), disable=disable)


def _run_on_ray(cfg: EvalConfig, role: Role, catalogue, work, ray_address: str | None):
    """Start Ray (or join ``ray_address``), host the agent under test, run ``work(host)`` (a
    coroutine function), stop what was started; return its result and the model servers' stats."""
    import ray

    from interplay.runtime import ray_cluster
    from interplay.runtime.hosts import start_agent_hosts

    started = ray_cluster.connect(address=ray_address)
    try:
        hosts, servers = start_agent_hosts({role: cfg.spec}, catalogue, cfg)
        result = asyncio.run(work(hosts[role]))
        stats = {m: ray.get(s.stats.remote()) for m, s in servers.items()}
        return result, stats
    finally:
        ray_cluster.disconnect(started)


def evaluate_user(cfg: EvalConfig, resume: bool = False, ray_address: str | None = None,
                  progress: bool = True) -> dict:
    """Replay (SR/ET/FR), single-turn replies (BERTScore, Dist-4, words) and the real-human view of
    a user agent on ``cfg.split`` of ``cfg.data``; writes the report to ``cfg.out``."""
    from interplay.episode_log import EpisodeLogWriter, latest_episodes
    from interplay.evaluation.agent_report import user_report

    check_agent_spec(cfg.spec, Role.USER)
    cfg = with_decision_threshold(cfg)
    out = prepare_eval_dir(cfg, resume)
    records, catalogue = _records(cfg)
    replay, skipped_replay = replay_tasks(records) if "replay" in cfg.parts else ([], Counter())
    grounding = catalogue if cfg.grounded else None
    turns, skipped_turns = user_turn_tasks(records, grounding) if {"single", "nll"} & set(cfg.parts) else ([], Counter())
    single, skipped_single = (turns, skipped_turns) if "single" in cfg.parts else ([], Counter())
    nll_tasks = turns if "nll" in cfg.parts else []  # the same recorded user turns, scored instead of answered
    human, skipped_human = human_decision_tasks(records, grounding) if "human" in cfg.parts else ([], Counter())
    probes, skipped_probe = _probe_tasks(cfg, records, catalogue) if "probe" in cfg.parts else ([], {})
    single_log, human_log = ResultLog(out / SINGLE_FILE), ResultLog(out / HUMAN_FILE)
    probe_log, nll_log = ResultLog(out / PROBE_FILE), ResultLog(out / NLL_FILE)
    threshold = cfg.accept_threshold if cfg.decision == "score" else None

    async def work(host):
        with _progress(not progress) as bar, EpisodeLogWriter(out / REPLAY_DIR) as writer:
            done = writer.existing_ids()
            t1 = bar.add_task("replay episodes", total=len(replay), completed=len(done & {t.episode_id for t in replay}))
            t2 = bar.add_task("single-turn replies", total=len(single), completed=sum(t.task_id in single_log.rows for t in single))
            t3 = bar.add_task("human-judged items", total=len(human), completed=sum(t.task_id in human_log.rows for t in human))
            t4 = bar.add_task("probe recommendations", total=len(probes),
                              completed=sum(t.task_id in probe_log.rows for t in probes))
            t5 = bar.add_task("likelihood of real user turns", total=len(nll_tasks),
                              completed=sum(t.task_id in nll_log.rows for t in nll_tasks))
            parts = [
                lambda: run_turn_tasks(host, human, human_log, cfg.concurrency, cfg.seed, lambda r: bar.advance(t3),
                                       threshold),
                lambda: run_turn_tasks(host, probes, probe_log, cfg.concurrency, cfg.seed, lambda r: bar.advance(t4),
                                       threshold),
                lambda: run_turn_tasks(host, nll_tasks, nll_log, cfg.concurrency, cfg.seed, lambda r: bar.advance(t5),
                                       score_reference=True)]

            async def one_at_a_time():
                # scored parts run in turn: the prompts in flight then come from few dialogues, whose
                # shared prefixes the model server's scoring cache keeps (generated parts batch better
                # side by side)
                for part in parts:
                    await part()

            await asyncio.gather(
                run_replays(host, replay, writer, done, cfg.agent, cfg.max_retries, cfg.concurrency, cfg.seed,
                            lambda ep: bar.advance(t1), grounding, catalogue),
                run_turn_tasks(host, single, single_log, cfg.concurrency, cfg.seed, lambda r: bar.advance(t2)),
                *([one_at_a_time()] if threshold is not None else [p() for p in parts]),
            )

    try:
        _, stats = _run_on_ray(cfg, Role.USER, catalogue, work, ray_address)
    finally:
        single_log.close()
        human_log.close()
        probe_log.close()
        nll_log.close()
    ids = {t.episode_id for t in replay}
    replay_path = out / REPLAY_DIR / "episodes.jsonl"
    episodes = [e for e in latest_episodes(replay_path) if e.episode_id in ids] if replay_path.exists() else []
    skipped = {"replay": dict(skipped_replay), "single": dict(skipped_single), "human": dict(skipped_human),
               "probe": skipped_probe}
    human_rows = [human_log.rows[t.task_id] for t in human if t.task_id in human_log.rows]
    return user_report(cfg, out, episodes,
                       [single_log.rows[t.task_id] for t in single if t.task_id in single_log.rows],
                       human_rows,
                       records=len(records), skipped=skipped, model_servers=stats,
                       probes=[probe_log.rows[t.task_id] for t in probes if t.task_id in probe_log.rows],
                       nll=[nll_log.rows[t.task_id] for t in nll_tasks if t.task_id in nll_log.rows])


def with_decision_threshold(cfg: EvalConfig) -> EvalConfig:
    """``cfg`` with the threshold its scored decisions use: the one given, else the checkpoint's
    calibrated threshold (:mod:`interplay.decision_calibration`), else 0.5."""
    if cfg.decision != "score" or cfg.accept_threshold is not None:
        return cfg
    from interplay.agent_specs import agent_kind, model_of
    from interplay.decision_calibration import calibrated_threshold

    model = model_of(cfg.spec) if agent_kind(cfg.spec.kind).checkpoint else None
    threshold = calibrated_threshold(model) if model else None
    return cfg.model_copy(update={"accept_threshold": 0.5 if threshold is None else threshold})


def _probe_tasks(cfg: EvalConfig, records, catalogue):
    """The counterfactual-discrimination tasks (popular: the data folder's train split, if any)."""
    from pathlib import Path

    from agents.popularity import popularity_ranking
    from interplay.evaluation.probes import probe_tasks

    from interplay.data.build import default_data_root
    from interplay.data.co_ratings import CoRatings
    from interplay.data.movielens import ML_SMALL

    popular = popularity_ranking(str(Path(cfg.data).resolve())) if (Path(cfg.data) / "train.jsonl").exists() else []
    ratings = default_data_root() / ML_SMALL / "ratings.csv"
    co = CoRatings.from_movielens(default_data_root()) if ratings.is_file() else None
    return probe_tasks(records, catalogue, cfg.grounded, popular, seed=cfg.seed, co_ratings=co)


def evaluate_recommender(cfg: EvalConfig, resume: bool = False, ray_address: str | None = None,
                         progress: bool = True) -> dict:
    """Recall@k, MatchScore, Dist-4 and words of a recommender agent's turn at the recorded
    recommendation of the target, generated from the gold history; writes the report."""
    from interplay.evaluation.agent_report import recommender_report
    from interplay.matchscore.scorer import MatchScorer

    check_agent_spec(cfg.spec, Role.RECOMMENDER)
    records, catalogue = _records(cfg)
    if cfg.force_recommend and cfg.generation.decoding == "constrained":
        check_actions(Role.RECOMMENDER, {Action.RECOMMEND}, len(catalogue) > 0)  # GrammarError before any work
    out = prepare_eval_dir(cfg, resume)
    scorer = MatchScorer(matchscore_dir(cfg.matchscore_encoder), catalogue)  # fail early if missing
    from interplay.agent_specs import sees_persona

    candidates = None
    if cfg.recommender_candidates:
        from interplay.candidates import CandidateRetriever

        candidates = (CandidateRetriever.for_data(cfg.data, catalogue, cfg.matchscore_encoder and
                                                  matchscore_dir(cfg.matchscore_encoder)), cfg.recommender_candidates)
    tasks, skipped = recommender_turn_tasks(records, sees_persona(cfg.spec, cfg.recommender_sees_persona),
                                            force_recommend=cfg.force_recommend, rank_items=cfg.rank_items,
                                            rank_beam=cfg.rank_beam,
                                            candidates=candidates)
    log = ResultLog(out / RECOMMEND_FILE)

    async def work(host):
        with _progress(not progress) as bar:
            t = bar.add_task("recommendations", total=len(tasks), completed=sum(x.task_id in log.rows for x in tasks))
            await run_turn_tasks(host, tasks, log, cfg.concurrency, cfg.seed, lambda r: bar.advance(t))

    try:
        _, stats = _run_on_ray(cfg, Role.RECOMMENDER, catalogue, work, ray_address)
    finally:
        log.close()
    rows = [log.rows[t.task_id] for t in tasks if t.task_id in log.rows]
    return recommender_report(cfg, out, rows, scorer, records=len(records), skipped=dict(skipped),
                              model_servers=stats)

