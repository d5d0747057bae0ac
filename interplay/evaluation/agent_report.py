"""Scores of an evaluation and its files: ``metrics.json``, per-episode / per-task CSVs, PNG plots."""

from __future__ import annotations

import os
from pathlib import Path

from interplay.checkpoint_info import agent_training
from interplay.episode_log import EpisodeLog
from interplay.run_folder import write_json_atomic
from interplay.evaluation.config import EvalConfig
from interplay.metrics.agreement import decision_agreement
from interplay.metrics.bertscore import BERTScoreSettings, bertscore
from interplay.metrics.core import (
    action_distribution,
    dist_n,
    outcome_class,
    recall_at_k,
    summarize_values,
    termination_mix,
    turns_to_accept,
    words,
)
from interplay.evaluation.parts import write_csv

METRICS_FILE = "metrics.json"


def replay_metrics(episodes: list[EpisodeLog]) -> dict:
    """SR / ET / FR of replay episodes (exclusive, summing to 1), terminations, turns to accept."""
    outcomes = [outcome_class(e) for e in episodes]
    share = {k: outcomes.count(k) / len(outcomes) if outcomes else None for k in ("SR", "ET", "FR")}
    if outcomes:
        assert abs(sum(share.values()) - 1) < 1e-9, share
    attempts = sum(1 + len(t.failed_attempts) for e in episodes for t in e.turns if t.role.value == "user")
    parsed = [t for e in episodes for t in e.turns if t.role.value == "user" and t.action is not None]
    fallback = sum(1 for t in parsed if t.meta.get("fallback"))
    return {"episodes": len(episodes), **share, "termination": termination_mix(episodes),
            "turns_to_accept": summarize_values(turns_to_accept(e) for e in episodes).as_dict(),
            "user_parse_rate": len(parsed) / attempts if attempts else None,
            "user_protocol_clean_rate": (len(parsed) - fallback) / attempts if attempts else None,
            "user_fallback_rate": fallback / attempts if attempts else None,
            "user_actions": action_distribution(episodes)["user"]}


def single_turn_metrics(rows: list[dict], settings: BERTScoreSettings) -> tuple[dict, list[dict]]:
    """BERTScore of each generated reply against the gold reply, Dist-4 and words of the
    generated replies (gold figures beside them), parse rate, agreement with the gold action."""
    from interplay.evaluation.runner import plain_text

    scores, info = bertscore([plain_text(r["text"] or "") for r in rows],
                             [plain_text(r["reference"] or "") for r in rows], settings)
    for r, s in zip(rows, scores):
        r["bertscore_f1"] = s["F1"]
    texts = [r["text"] or "" for r in rows]
    return {
        "n": len(rows), "bertscore": info,
        "bertscore_f1": summarize_values(s["F1"] for s in scores).as_dict(),
        "bertscore_p": summarize_values(s["P"] for s in scores).as_dict(),
        "bertscore_r": summarize_values(s["R"] for s in scores).as_dict(),
        "dist4": dist_n(texts, 4), "words": summarize_values(words(t) for t in texts).as_dict(),
        "gold_dist4": dist_n([r["reference"] or "" for r in rows], 4),
        "gold_words": summarize_values(words(r["reference"] or "") for r in rows).as_dict(),
        "parse_rate": sum(r["parsed"] for r in rows) / len(rows) if rows else None,
        "fallback_rate": sum(bool(r.get("fallback")) for r in rows) / len(rows) if rows else None,
        "action_agreement": sum(r["action"] == r["reference_action"] for r in rows) / len(rows) if rows else None,
    }, rows


def human_view_metrics(rows: list[dict]) -> dict:
    """The agent's accept (its reply's action is ``accept``) vs the human's verdict on each item;
    with scored decisions, also the ROC AUC of P(accept) and the best threshold on these items."""
    rows = sorted(rows, key=lambda r: r["task_id"])  # figures independent of completion order
    scored = rows and all(r.get("p_accept") is not None for r in rows)
    m = decision_agreement([int(r["human_accept"]) for r in rows], [int(r["action"] == "accept") for r in rows],
                           [r["p_accept"] for r in rows] if scored else None,
                           clusters=[r["record_id"] for r in rows])
    methods = [r.get("decision_method", "generate") for r in rows]
    m["decision_method"] = {k: methods.count(k) for k in sorted(set(methods))}
    from interplay.metrics.fidelity import sliced_decision_figures

    m["slices"] = {k: v for k, v in sliced_decision_figures([{**r, "accept": r["action"] == "accept"} for r in rows]).items()
                   if k != "all"}
    return m


def user_turn_nll(rows: list[dict]) -> dict:
    """Mean negative log-likelihood per token of the real user turns under the agent's model
    (token-weighted over turns), its perplexity, and the mean NLL per turn (nats): agents that
    serialise turns differently (added action tokens vs tags spelled out in text) split the same
    turn into different numbers of tokens, so compare agents per turn. None figures when the agent
    cannot score."""
    import math

    scored = [r for r in rows if r.get("logprob") is not None and r.get("tokens")]
    tokens = sum(r["tokens"] for r in scored)
    nll = -sum(r["logprob"] for r in scored) / tokens if tokens else None
    return {"turns": len(rows), "scored_turns": len(scored), "tokens": tokens, "nll_per_token": nll,
            "perplexity": math.exp(nll) if nll is not None else None,
            "nll_per_turn": -sum(r["logprob"] for r in scored) / len(scored) if scored else None}


def user_report(ctx, results: dict[str, list], skipped: dict, model_servers: dict, plots: bool = True) -> dict:
    """``metrics.json`` of a user evaluation: each registered part's summary under its key (its
    ``empty`` value when it did not run), and each part's files (CSVs, plots)."""
    from interplay.evaluation.parts import user_parts

    cfg, out = ctx.cfg, ctx.out
    metrics = {"kind": "user", "agent": str(cfg.agent), "data": cfg.data, "split": cfg.split, "records": len(ctx.records),
               "settings": cfg.model_dump(mode="json"), "agent_training": agent_training(cfg.agent),
               "skipped": skipped}
    parts = user_parts()
    for name, part in parts.items():
        metrics[part.metrics_key] = part.summarize(ctx, results[name]) if name in results else part.empty
    metrics["model_servers"] = model_servers
    write_json_atomic(out / METRICS_FILE, metrics)
    for name, rows in results.items():
        parts[name].write(ctx, rows, metrics[parts[name].metrics_key], plots)
    return metrics


def recommender_report(cfg: EvalConfig, out: Path, rows: list[dict], scorer, records: int, skipped: dict,
                       model_servers: dict, plots: bool = True) -> dict:
    def item_id(title: str | None) -> str | None:  # a generated title, resolved once, here
        item = scorer.catalogue.resolve(title) if title else None
        return item.item_id if item is not None else None

    for r in rows:
        title = r["titles"][0] if r["action"] == "recommend" and r["titles"] else None
        m = scorer.score(title, r["target"], r.get("target_id"))
        ranked = [item_id(t) for t in r.get("ranked_items") or ([title] if title else [])]
        target_id = r["target_id"]
        r.update(recommended=title, recommended_id=item_id(title), recall_at_1=float(item_id(title) == target_id),
                 matchscore=m.score, matched=m.matched, matched_item=m.item_id,
                 **{f"recall_at_{k}": recall_at_k(ranked, target_id, k) for k in (10, 50)})
    has_rank = any(r.get("ranked_items") for r in rows)
    texts = [r["text"] or "" for r in rows]
    recommended = [r for r in rows if r["recommended"]]
    metrics = {
        "kind": "recommender", "agent": str(cfg.agent), "data": cfg.data, "split": cfg.split, "records": records,
        "settings": cfg.model_dump(mode="json"), "agent_training": agent_training(cfg.agent), "skipped": skipped,
        "n": len(rows),
        "recall@1": summarize_values(r["recall_at_1"] for r in rows).mean,
        "recall@10": summarize_values(r["recall_at_10"] for r in rows).mean if has_rank else None,
        "recall@50": summarize_values(r["recall_at_50"] for r in rows).mean if has_rank else None,
        # the longest ranking logged: Recall@k past it counts only what was ranked (e.g. the
        # candidates of a run with --titles candidates and --rank-items K)
        "rank_depth": max((len(r.get("ranked_items") or []) for r in rows), default=0),
        "matchscore": summarize_values(r["matchscore"] for r in rows).as_dict(),  # None (target not in catalogue) left out
        "matchscore_matched_only": summarize_values(r["matchscore"] for r in rows if r["matched"]).as_dict(),
        "target_not_in_catalogue": sum(1 for r in rows if r["matchscore"] is None),
        "recommended": len(recommended),
        "no_recommendation": len(rows) - len(recommended),
        "unmatched_titles": sum(1 for r in recommended if not r["matched"]),
        "matchscore_encoder": {"path": str(scorer_path(cfg)), "text_encoder": scorer.config.get("text_encoder"),
                               "ranking": scorer.config.get("metrics", {}).get("test")},
        "dist4": dist_n(texts, 4), "words": summarize_values(words(t) for t in texts).as_dict(),
        "parse_rate": sum(r["parsed"] for r in rows) / len(rows) if rows else None,
        "fallback_rate": sum(bool(r.get("fallback")) for r in rows) / len(rows) if rows else None,
        "decoding": _decoding_counts(rows),
        "forced_recommend": cfg.force_recommend,
        "model_servers": model_servers,
    }
    write_json_atomic(out / METRICS_FILE, metrics)
    write_csv(out / "recommendations.csv", rows)
    if plots and rows:
        plot_matchscores({str(cfg.agent): rows}, out / "matchscore.png")
    return metrics


def _decoding_counts(rows: list[dict]) -> dict:
    """How many answers were decoded constrained / free / parse-after; ``unparsed``: the output
    did not parse; ``not generated``: an agent without a language model (rule, popularity, UniCRS)."""
    counts: dict[str, int] = {}
    for r in rows:
        key = r.get("decoding") or ("not generated" if r.get("parsed") else "unparsed")
        counts[key] = counts.get(key, 0) + 1
    return counts


def scorer_path(cfg: EvalConfig) -> Path:
    from interplay.matchscore.location import matchscore_dir

    return matchscore_dir(cfg.matchscore_encoder)


def _plt(out: Path):
    os.environ.setdefault("MPLCONFIGDIR", str(out.parent / ".mpl"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_outcomes(by_agent: dict[str, dict], path: Path) -> None:
    """SR / ET / FR stacked bar, one bar per agent."""
    plt = _plt(path)
    names = list(by_agent)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(names), 3.4))
    bottom = [0.0] * len(names)
    for key, color in (("SR", "#55a868"), ("ET", "#dd8452"), ("FR", "#c44e52")):
        vals = [by_agent[n]["replay"].get(key) or 0.0 for n in names]
        ax.bar(range(len(names)), vals, bottom=bottom, color=color, label=key)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(names)), [n if len(n) < 28 else "…" + n[-26:] for n in names], rotation=20, ha="right")
    ax.set(ylabel="share of replayed dialogues", ylim=(0, 1), title="User simulators: SR / ET / FR")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_matchscores(by_agent: dict[str, list[dict]], path: Path) -> None:
    """MatchScore histogram per recommender agent."""
    plt = _plt(path)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, rows in by_agent.items():
        ax.hist([r["matchscore"] for r in rows if r["matchscore"] is not None], bins=20, range=(-0.2, 1.0), alpha=0.55, label=name)
    ax.set(xlabel="MatchScore", ylabel="recommendations", title="MatchScore (0: no or unmatched title)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _turns_and_actions(episodes: list[EpisodeLog], metrics: dict, out: Path) -> None:
    from interplay.evaluation.run_report import _plots, episode_row

    _plots({"actions": action_distribution(episodes)}, [episode_row(e) for e in episodes], out)
