"""``interplay evaluate report``: every evaluation under some folders in one markdown report
with its plots, each figure traced to the folder it was read from.

Tables: user simulators (replay SR/ET/FR, parse and fallback rates, agreement with the humans'
accept/reject decisions with a 95% bootstrap interval, ROC AUC of scored decisions, the
majority baseline); the agreement gap between data sets per agent; recommenders (Recall@1/10/50,
MatchScore, parse/fallback, unmatched titles, forced or free). Plots: balanced accuracy with its
interval, MatchScore, per agent and data set.
"""

from __future__ import annotations

import json
from pathlib import Path

from interplay.evaluation.agent_report import METRICS_FILE

REPORT_FILE = "report.md"


def find_evaluations(roots: list[str | Path]) -> list[tuple[Path, dict]]:
    """(folder, metrics) of every evaluation at or under ``roots``, sorted by folder."""
    found: dict[Path, dict] = {}
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such folder")
        paths = [root / METRICS_FILE] if (root / METRICS_FILE).exists() else sorted(root.rglob(METRICS_FILE))
        for p in paths:
            m = json.loads(p.read_text())
            if m.get("kind") in ("user", "recommender"):
                found[p.parent] = m
    if not found:
        raise FileNotFoundError(f"no evaluation ({METRICS_FILE}) under {', '.join(map(str, roots))}")
    return sorted(found.items(), key=lambda kv: str(kv[0]))


def _f(x, digits: int = 3) -> str:
    return "" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _data(m: dict) -> str:
    return f"{Path(m['data']).name}/{m['split']}"


def _settings(m: dict) -> dict:
    return m.get("settings") or {}


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def user_rows(evals: list[tuple[Path, dict]]) -> list[list[str]]:
    rows = []
    for d, m in evals:
        s, r, h = _settings(m), m.get("replay", {}), m.get("human_view", {})
        ci = h.get("balanced_accuracy_ci95")
        rows.append([m["agent"], _data(m), (s.get("generation") or {}).get("decoding", ""), _f(s.get("grounded")),
                     ", ".join(f"{k} {v}" for k, v in (h.get("decision_method") or {}).items()),
                     _f(r.get("SR")), _f(r.get("ET")), _f(r.get("FR")), _f(r.get("user_parse_rate")),
                     _f(r.get("user_fallback_rate")),
                     f"{h['n']} ({h.get('human_accepts')}/{h.get('human_rejects')})" if h.get("n") else "",
                     _f(h.get("agent_accepts")), _f(h.get("balanced_accuracy")),
                     f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "", _f(h.get("roc_auc")), _f(h.get("majority_accuracy")),
                     _f(s.get("accept_threshold")) if s.get("decision") == "score" else "", f"`{d}`"])
    return rows


USER_HEAD = ["agent", "data", "decoding", "grounded", "decisions", "SR", "ET", "FR", "parse", "fallback",
             "judged items (accepted/rejected)", "agent accepts", "balanced acc.", "95% CI", "ROC AUC",
             "majority acc.", "threshold", "folder"]


def gap_rows(evals: list[tuple[Path, dict]], slice_name: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Balanced accuracy per agent (and decision method) and data set, and the largest gap; with
    ``slice_name``, over that slice of the judged items (``human_view.slices``)."""
    table: dict[str, dict[str, float]] = {}
    for _, m in evals:
        h = m.get("human_view", {})
        value = h.get("balanced_accuracy")
        if slice_name is not None:
            value = ((h.get("slices") or {}).get(slice_name, {}).get("balanced_accuracy") or {}).get("value")
        if value is None:
            continue
        method = "score" if "score" in (h.get("decision_method") or {}) else "generate"
        table.setdefault(f"{m['agent']} ({method})", {})[_data(m)] = value
    datasets = sorted({k for v in table.values() for k in v})
    rows = []
    for agent, by in sorted(table.items()):
        vals = [by[d] for d in datasets if d in by]
        rows.append([agent, *(_f(by.get(d)) for d in datasets), _f(max(vals) - min(vals)) if len(vals) > 1 else ""])
    return ["agent", *datasets, "gap"], rows


def _ranked(settings: dict) -> str:
    """The ranking an evaluation asked for: top N, exact or by a beam of B prefixes."""
    n, beam = settings.get("rank_items") or 0, settings.get("rank_beam") or 0
    return "" if not n else f"{n} (beam {beam})" if beam else f"{n} (exact)"


def recommender_rows(evals: list[tuple[Path, dict]]) -> list[list[str]]:
    rows = []
    for d, m in evals:
        s = _settings(m)
        rows.append([m["agent"], _data(m), ", ".join(f"{k} {v}" for k, v in (m.get("decoding") or {}).items()),
                     _f(m.get("forced_recommend")), str(m["n"]), _f(m.get("parse_rate")), _f(m.get("fallback_rate")),
                     str(m.get("recommended")), str(m.get("unmatched_titles")), _f(m.get("recall@1")),
                     _f(m.get("recall@10")), _f(m.get("recall@50")), _f((m.get("matchscore") or {}).get("mean")),
                     _ranked(s), f"`{d}`"])
    return rows


REC_HEAD = ["agent", "data", "decoding", "forced", "n", "parse", "fallback", "recommended", "unmatched titles",
            "Recall@1", "Recall@10", "Recall@50", "MatchScore", "ranked", "folder"]


def _training(m: dict) -> dict | None:
    """What the evaluated checkpoint was trained on: recorded by the evaluation, or (evaluations
    from before that was recorded) read from the checkpoint when it is on this machine."""
    if "agent_training" in m:
        return m["agent_training"]
    from interplay.checkpoint_info import agent_training

    try:
        return agent_training(m["agent"])
    except ValueError:
        return None


def transfer_rows(evals: list[tuple[Path, dict]]) -> list[list[str]]:
    """Trained user simulators' agreement with the humans, by what they were trained on (real or
    simulated dialogue): the project's transfer question, on held-out human dialogues."""
    rows = []
    for d, m in evals:
        t, h = _training(m), m.get("human_view", {})
        if not t or h.get("balanced_accuracy") is None:
            continue
        ci = h.get("balanced_accuracy_ci95")
        kind = "simulated" if t.get("simulated") else "real"
        recipe = ", ".join(x for x in [t.get("epochs") is not None and f"{t['epochs']:g} ep", t.get("grounded") and "grounded",
                                        t.get("grounding_match") and "match counts",
                                        (t.get("decision_examples") or 0) and f"decision x{t['decision_examples']}",
                                        (t.get("counterfactual_negatives") or 0) and f"cf {t['counterfactual_negatives']}",
                                        (t.get("action_loss_weight") or 1) != 1 and f"action x{t['action_loss_weight']}"] if x)
        rows.append([m["agent"], f"{kind}: `{t.get('data')}` ({_f(t.get('train_records'))} train)", recipe, _data(m),
                     _f(h.get("balanced_accuracy")), f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "", _f(h.get("roc_auc")),
                     _f((m.get("replay") or {}).get("SR")), f"`{d}`"])
    return rows


TRANSFER_HEAD = ["agent", "trained on", "recipe", "evaluated on (human dialogues)", "balanced acc.", "95% CI",
                 "ROC AUC", "SR", "folder"]


def _plots(evals: list[tuple[Path, dict]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    users = [(m, m["human_view"]) for _, m in evals if m["kind"] == "user" and
             (m.get("human_view") or {}).get("balanced_accuracy") is not None]
    if users:
        labels = [f"{m['agent']}\n{_data(m)}" for m, _ in users]
        vals = [h["balanced_accuracy"] for _, h in users]
        err = [[v - (h.get("balanced_accuracy_ci95") or [v, v])[0] for v, (_, h) in zip(vals, users)],
               [(h.get("balanced_accuracy_ci95") or [v, v])[1] - v for v, (_, h) in zip(vals, users)]]
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(users)), 4))
        ax.bar(range(len(users)), vals, yerr=err, capsize=4, color="#4c72b0")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="always accept / chance")
        ax.set_xticks(range(len(users)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("balanced accuracy vs the humans (95% CI)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "agreement.png", dpi=120)
        plt.close(fig)
        written.append("agreement.png")
    recs = [m for _, m in evals if m["kind"] == "recommender" and (m.get("matchscore") or {}).get("mean") is not None]
    if recs:
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(recs)), 4))
        ax.bar(range(len(recs)), [m["matchscore"]["mean"] for m in recs], color="#55a868")
        ax.set_xticks(range(len(recs)), [f"{m['agent']}\n{_data(m)}\n{'forced' if m.get('forced_recommend') else 'free'}"
                                         for m in recs], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("MatchScore (mean)")
        ax.set_ylim(0, 1)
        fig.tight_layout()
        fig.savefig(out / "matchscore.png", dpi=120)
        plt.close(fig)
        written.append("matchscore.png")
    return written


def write_report(roots: list[str | Path], out: str | Path) -> Path:
    """Write ``OUT/report.md`` (and its PNGs) for every evaluation under ``roots``."""
    evals = find_evaluations(roots)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    users = [(d, m) for d, m in evals if m["kind"] == "user"]
    recs = [(d, m) for d, m in evals if m["kind"] == "recommender"]
    lines = ["# Evaluation report", "", f"{len(evals)} evaluations read from {', '.join(f'`{r}`' for r in roots)}.", ""]
    if users:
        lines += ["## User simulators", "",
                  "SR / ET / FR: replay of the recorded recommender turns. Agreement: the agent's accept vs the "
                  "human's verdict on each judged item; balanced accuracy 0.5 is always-accept (or chance); "
                  "the interval is a 95% percentile bootstrap over items.", ""]
        lines += _table(USER_HEAD, user_rows(users)) + [""]
        head, rows = gap_rows(users)
        if rows:
            lines += ["### Agreement with the humans per data set", ""] + _table(head, rows) + [""]
        head, rows = gap_rows(users, "looked-up")
        if rows:
            lines += ["### The same on the items both corpora judge alike", "",
                      "Balanced accuracy on the looked-up items (`interplay.metrics.fidelity.LOOKED_UP`): a "
                      "recommended item the catalogue describes that is the target or lies in a dialogue without "
                      "one. Corpora differ in how often people react well to other items and in how many items "
                      "no catalogue describes.", ""] + _table(head, rows) + [""]
        transfer = transfer_rows(users)
        if transfer:
            lines += ["### Transfer: trained on real vs simulated dialogue", "",
                      "Trained user simulators on the same held-out human dialogues, by their training data "
                      "(simulated: built from episode logs with `data build --source episodes`).", ""]
            lines += _table(TRANSFER_HEAD, transfer) + [""]
    if recs:
        lines += ["## Recommenders", "",
                  "At the turn where the record recommends the accepted item; forced: the turn is narrowed to a "
                  "recommendation. Recall@10/50 need a ranking (UniCRS, popularity, or --rank-items).", ""]
        lines += _table(REC_HEAD, recommender_rows(recs)) + [""]
    for png in _plots(evals, out):
        lines += [f"![{png}]({png})", ""]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines))
    return path
