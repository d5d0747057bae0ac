"""``interplay evaluate user`` / ``evaluate recommender``: run the tasks, score, write the report."""

from __future__ import annotations

import asyncio

from interplay.agent_specs import check_agent_spec
from interplay.evaluation.config import EvalConfig, prepare_eval_dir
from interplay.evaluation.runner import ResultLog, run_turn_tasks
from interplay.evaluation.tasks import recommender_turn_tasks
from interplay.matchscore.location import matchscore_dir
from interplay.protocol import Action, Role
from interplay.run_checkpoints import pin_checkpoints
from interplay.turn_grammar import check_actions

RECOMMEND_FILE = "recommendations.jsonl"


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
    """Run ``cfg.parts`` of a user agent on ``cfg.split`` of ``cfg.data`` (the registered parts of
    :mod:`interplay.evaluation.parts`: replay, single, human, probe, nll, ...); writes the report
    to ``cfg.out``."""
    from interplay.evaluation.agent_report import user_report
    from interplay.evaluation.parts import PartContext, user_parts

    check_agent_spec(cfg.spec, Role.USER)
    cfg = with_decision_threshold(cfg)
    out = prepare_eval_dir(cfg, resume)
    pin_checkpoints(out, [cfg.spec])
    records, catalogue = _records(cfg)
    ctx = PartContext(cfg, out, records, catalogue)
    parts = [p for p in user_parts().values() if p.name in cfg.parts]
    built = {p.name: p.tasks(ctx) for p in parts}
    logs: dict = {}
    try:
        for p in parts:
            logs[p.name] = p.open(ctx)

        async def work(host):
            with _progress(not progress) as bar:
                def runner(p):
                    tasks = built[p.name][0]
                    t = bar.add_task(p.label, total=len(tasks), completed=p.done(logs[p.name], tasks))
                    return lambda: p.run(ctx, host, tasks, logs[p.name], lambda r: bar.advance(t))

                runs = {p.name: runner(p) for p in parts}
                scored = [runs[p.name] for p in parts if p.scored]

                async def one_at_a_time():
                    # scored parts run in turn: the prompts in flight then come from few dialogues, whose
                    # shared prefixes the model server's scoring cache keeps (generated parts batch better
                    # side by side)
                    for run in scored:
                        await run()

                await asyncio.gather(*(runs[p.name]() for p in parts if not p.scored),
                                     *([one_at_a_time()] if ctx.threshold is not None else [r() for r in scored]))

        _, stats = _run_on_ray(cfg, Role.USER, catalogue, work, ray_address)
        results = {p.name: p.results(ctx, logs[p.name], built[p.name][0]) for p in parts}
    finally:
        for p in parts:
            if p.name in logs:
                p.close(logs[p.name])
    skipped = {p.name: dict(built[p.name][1]) for p in parts}
    return user_report(ctx, results, skipped=skipped, model_servers=stats)


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
    pin_checkpoints(out, [cfg.spec])
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

