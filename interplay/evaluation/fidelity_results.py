"""A fidelity scorecard as docs result files (:mod:`interplay.results_docs`): the decision figures
per slice, the discrimination probes and the replay outcomes, each row with its agent's
checkpoint hash and threshold, so the docs' tables are rendered from data, never typed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from interplay.metrics.fidelity import SLICES
from interplay.results_docs import Column, ResultsError, ResultTable


def agent_checkpoint(spec: str) -> str:
    """The content hash of the weights an agent spec runs (``-`` for agents without weights); a
    scorecard name with ``+controls`` (decoded with repetition controls) names the same weights."""
    from interplay.evaluation.fidelity import CONTROLS_SUFFIX
    from interplay.run_checkpoints import current_checkpoint

    return current_checkpoint(spec.removesuffix(CONTROLS_SUFFIX))


def _figure(fig: dict | None, n: int | None = None) -> dict | None:
    if not fig or fig.get("value") is None:
        return None
    return {"value": fig["value"], "ci95": fig.get("ci95"), "n": n}


def _rate(fig: dict | None) -> dict | None:
    if not fig or fig.get("accept_rate") is None:
        return None
    return {"value": fig["accept_rate"], "ci95": fig.get("ci95"), "n": fig.get("n")}


def scorecard_results(card: dict, command: str, measured: dt.date, source: str) -> dict[str, ResultTable]:
    """Three tables from one scorecard: ``decisions`` (per agent and slice), ``probes`` and
    ``replay``. The figures a hint defines are named in the probe table's ``by construction`` column."""
    c = card["config"]
    thresholds = {a["agent"]: a.get("accept_threshold") for a in card["agents"]}
    hashes = {a["agent"]: a.get("checkpoint") or agent_checkpoint(a["agent"]) for a in card["agents"]}
    common = {"command": command, "data": c["data"], "split": c["split"], "source": source, "measured": measured}
    base = lambda a: {"agent": a["agent"], "checkpoint": hashes[a["agent"]], "threshold": thresholds[a["agent"]]}  # noqa: E731

    rows = []
    for a in card["agents"]:
        for s in ("all", *SLICES):
            d = a["decisions"].get(s) or {}
            if not d.get("n"):
                continue
            rows.append({**base(a), "slice": s, "n": f"{d['n']} ({d['human_accepts']}/{d['human_rejects']})",
                         "dialogues": d.get("dialogues"), "agent_accepts": d["agent_accepts"],
                         "accuracy": _figure(d.get("accuracy")), "balanced_accuracy": _figure(d.get("balanced_accuracy")),
                         "kappa": _figure(d.get("kappa")), "reject_f1": _figure(d.get("reject_f1"))})
    decisions = ResultTable(
        title=f"Decisions against people per slice: {c['data']} ({c['split']})", **common,
        columns=[Column(key="agent", header="agent"), Column(key="slice", header="slice"),
                 Column(key="n", header="n (acc/rej)"), Column(key="dialogues", header="dialogues", format="d"),
                 Column(key="agent_accepts", header="agent accepts", format="d"),
                 Column(key="accuracy", header="accuracy", format=".2f"),
                 Column(key="balanced_accuracy", header="balanced acc.", format=".2f"),
                 Column(key="kappa", header="kappa", format=".2f"), Column(key="reject_f1", header="reject F1", format=".2f"),
                 Column(key="checkpoint", header="checkpoint"), Column(key="threshold", header="threshold", format=".3f")],
        rows=rows,
        notes=["Slices are set by provenance when the records are built (docs/data.md); n counts judged items "
               "(accepted / rejected by the person); items the person did not say about are left out.",
               "Intervals: 95% bootstrap over dialogues (clusters), 2,000 resamples, rows sorted by task id."])

    probe_rows = []
    for a in card["agents"]:
        d, rates = a.get("discrimination") or {}, (a.get("discrimination") or {}).get("rates", {})
        hint = a.get("hint_use") or {}
        built = set(hint.get("by_construction", []))
        probe_rows.append({**base(a), **{k.replace("-", "_"): _rate(rates.get(k))
                                         for k in ("matching", "contradicting", "co-liked", "co-disliked")},
                           "gap": _figure(d.get("gap"), (d.get("gap") or {}).get("n")),
                           "match_auc": d.get("match_auc"),
                           "disjoint_gap": _figure(d.get("disjoint_gap"), (d.get("disjoint_gap") or {}).get("n")),
                           "by_construction": ", ".join(sorted(built)) or "-",
                           "hint": "; ".join(hint.get("uses", [])) or "-"})
    probes = ResultTable(
        title=f"Counterfactual probes: {c['data']} ({c['split']})", **common,
        columns=[Column(key="agent", header="agent"), Column(key="matching", header="matching", format=".2f"),
                 Column(key="contradicting", header="contradicting", format=".2f"),
                 Column(key="gap", header="gap (n)", format=".2f", show_n=True),
                 Column(key="match_auc", header="AUC of match", format=".3f"),
                 Column(key="co_liked", header="co-liked", format=".2f"),
                 Column(key="co_disliked", header="co-disliked", format=".2f"),
                 Column(key="disjoint_gap", header="disjoint gap (n)", format=".2f", show_n=True),
                 Column(key="by_construction", header="by construction"), Column(key="hint", header="hint"),
                 Column(key="checkpoint", header="checkpoint"), Column(key="threshold", header="threshold", format=".3f")],
        rows=probe_rows,
        notes=["matching / contradicting: items chosen by their attribute overlap with the target; co-liked / "
               "co-disliked: films the target's MovieLens fans love / dislike (interplay.data.co_ratings), never one "
               "the contradicting rule would pick. The disjoint gap is co-liked minus co-disliked acceptance.",
               "A figure named under 'by construction' is defined by a rule the agent's training or prompt used "
               "(the hint column): it is reported, and never counted as the agent beating another."])

    def beside(a: dict, key: str) -> str:
        f = (a.get("behaviour") or {}).get("figures") or {}
        sim, hum = ((f.get(side) or {}).get("user", {}).get(key) for side in ("simulated", "human"))
        return "-" if sim is None else f"{sim:.3f} / {'-' if hum is None else f'{hum:.3f}'}"

    replay_rows = [{**base(a), "episodes": a["replay"].get("episodes"), "SR": a["replay"].get("SR"),
                    "ET": a["replay"].get("ET"), "FR": a["replay"].get("FR")} for a in card["agents"]]
    replay = ResultTable(
        title=f"Replays of the recorded recommender turns (SR / ET / FR by item id): {c['data']} ({c['split']})",
        **common,
        columns=[Column(key="agent", header="agent"), Column(key="episodes", header="episodes", format="d"),
                 Column(key="SR", header="SR", format=".3f"), Column(key="ET", header="ET", format=".3f"),
                 Column(key="FR", header="FR", format=".3f"),
                 Column(key="checkpoint", header="checkpoint"), Column(key="threshold", header="threshold", format=".3f")],
        rows=replay_rows,
        notes=["SR: the user accepted the target (the accepted item's id is the target's); ET: it accepted another "
               "item; FR: it accepted nothing."])
    tables = {"decisions": decisions, "probes": probes, "replay": replay}
    if any(a.get("simulator_faults") for a in card["agents"]):
        tables["faults"] = _faults_table(card["agents"], base, common)
    if card.get("downstream"):
        tables["downstream"] = _downstream_table(card["downstream"], common)
    return tables


def _faults_table(agents: list[dict], base, common: dict) -> ResultTable:
    """Simulator faults in the replays and the user's behaviour beside the people of the same dialogues."""
    def beside(a: dict, key: str) -> str:
        f = (a.get("behaviour") or {}).get("figures") or {}
        sim, hum = ((f.get(side) or {}).get("user", {}).get(key) for side in ("simulated", "human"))
        return "-" if sim is None else f"{sim:.3f} / {'-' if hum is None else f'{hum:.3f}'}"

    rows = []
    for a in agents:
        f = a.get("simulator_faults") or {}
        kinds = "; ".join(f"{k} {v['episodes']}" for k, v in (f.get("kinds") or {}).items() if v.get("episodes"))
        rows.append({**base(a), "episodes": f.get("episodes"),
                     "faults": f.get("any_fault") if f.get("episodes") else None, "kinds": kinds or "-",
                     "repeated": beside(a, "repeated_ngram_share"), "copied": beside(a, "copied_share"),
                     "self_repeats": beside(a, "self_repeat_rate")})
    return ResultTable(
        title="Simulator faults and the user's behaviour in the replays", **common,
        columns=[Column(key="agent", header="agent"), Column(key="episodes", header="episodes", format="d"),
                 Column(key="faults", header="episodes with a fault", format=".3f"),
                 Column(key="kinds", header="faults by kind (episodes)"),
                 Column(key="repeated", header="user repeated 3-grams (sim / human)"),
                 Column(key="copied", header="user copied from partner (sim / human)"),
                 Column(key="self_repeats", header="user self-repeats (sim / human)"),
                 Column(key="checkpoint", header="checkpoint")],
        rows=rows,
        notes=["Faults (interplay.evaluation.simulator_faults.FAULT_KINDS): ending before any recommendation, accepting "
               "with nothing recommended, leaking the target, repeating an own earlier turn, contradicting the target's "
               "attributes. Behaviour figures "
               "(interplay.metrics.behaviour) of the user's turns beside the human user turns of the same replayed "
               "dialogues."])


def _downstream_table(rows: list[dict], common: dict) -> ResultTable:
    """The downstream-utility rows (RecSims trained on each user agent's dialogues, or on real ones)."""
    out = [{"trained_on": r["trained_on"], "user": r["user"] or "-", "train_records": r.get("train_records"),
            "matchscore": _figure(r.get("matchscore"), (r.get("matchscore") or {}).get("n")),
            "recall_at_1": _figure(r.get("recall@1")), "recall_at_10": _figure(r.get("recall@10")),
            "agent": r["agent"], "checkpoint": agent_checkpoint(r["agent"]), "threshold": None} for r in rows]
    return ResultTable(
        title="Downstream utility: a RecSim trained on each user agent's simulated dialogues", **common,
        columns=[Column(key="trained_on", header="trained on"), Column(key="user", header="user agent"),
                 Column(key="train_records", header="train dialogues", format="d"),
                 Column(key="matchscore", header="MatchScore (n)", format=".2f", show_n=True),
                 Column(key="recall_at_1", header="Recall@1", format=".2f"),
                 Column(key="recall_at_10", header="Recall@10", format=".2f"),
                 Column(key="agent", header="recommender")],
        rows=out,
        notes=["Each RecSim is evaluated at the recorded recommendations of the held-out split (one scored turn per "
               "dialogue); intervals: 95% bootstrap."])


def write_scorecard_results(folder: Path, name: str, command: str, results_dir: Path,
                            measured: dt.date | None = None, notes: list[str] | None = None,
                            agents: list[str] | None = None) -> list[Path]:
    """Write ``results_dir/NAME-{decisions,probes,replay}.json`` (and ``NAME-downstream.json`` when the
    scorecard has downstream rows) from ``folder/scorecard.json`` (``notes`` added to each table's;
    ``agents``: only these agents' rows, in this order, e.g. a two-row comparison)."""
    card = json.loads((folder / "scorecard.json").read_text())
    if agents:
        held = {a["agent"]: a for a in card["agents"]}
        missing = [a for a in agents if a not in held]
        if missing:
            raise ResultsError(f"{folder / 'scorecard.json'}: no agent {', '.join(missing)} (it has "
                               f"{', '.join(held)})")
        card = {**card, "agents": [held[a] for a in agents]}
    tables = scorecard_results(card, command, measured or dt.date.today(), str(folder / "scorecard.json"))
    tables = {k: t.model_copy(update={"notes": [*t.notes, *(notes or [])]}) for k, t in tables.items()}
    results_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for kind, table in tables.items():
        path = results_dir / f"{name}-{kind}.json"
        path.write_text(table.model_dump_json(indent=1, exclude_none=False) + "\n")
        out.append(path)
    return out
