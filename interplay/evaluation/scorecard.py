"""The fidelity scorecard's markdown and plot, assembled from the declared evaluation parts
(:mod:`interplay.evaluation.parts`): each part contributes its section and plot columns; the
downstream-utility table (not an agent query) closes it. The built-in parts' sections are here."""

from __future__ import annotations

from pathlib import Path

from interplay.evaluation.parts import ScorecardColumn, scorecard_parts


def fmt(fig: dict | None, key: str = "value") -> str:
    """A figure with its interval (the interval belongs to ``value`` only)."""
    if not fig or fig.get(key) is None:
        return "-"
    ci = fig.get("ci95") if key in ("value", "accept_rate") else None
    return f"{fig[key]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def beside(figures: dict, key: str, role: str | None = None) -> str:
    """``simulated / human`` value of one behaviour figure (of ``role``'s turns, when given)."""
    def get(side: dict | None):
        return None if side is None else (side[role][key] if role else side[key])

    return f"{num(get(figures['simulated']))} / {num(get(figures['human']))}"


def _table(intro: str, headers: list[str]) -> list[str]:
    """A section's opening lines: its sentence, then a markdown table header."""
    return [intro, "", _row(headers), _row(["---"] * len(headers))]


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def decisions_section(agents: list[dict]) -> list[str]:
    """Decisions per slice against the humans' accept/reject (the ``human`` part)."""
    from interplay.metrics.fidelity import SLICES

    lines = _table("Decisions against the humans' accept/reject, per slice set by provenance (n = judged items, "
                   "accepts/rejects; dialogues; intervals: 95% dialogue-cluster bootstrap; majority = always the "
                   "humans' more frequent decision):",
                   ["agent", "slice", "n (acc/rej)", "dialogues", "agent accepts", "accuracy", "balanced acc.",
                    "kappa", "reject F1", "majority acc. / bal. acc."])
    for a in agents:
        for s in ("all", *SLICES):
            d = a["decisions"][s]
            if d.get("n"):
                lines.append(_row([a["agent"], s, f"{d['n']} ({d['human_accepts']}/{d['human_rejects']})",
                                   d.get("dialogues", "-"), d["agent_accepts"], fmt(d["accuracy"]),
                                   fmt(d["balanced_accuracy"]), fmt(d["kappa"]), fmt(d["reject_f1"]),
                                   f"{fmt(d['accuracy'], 'majority')} / {fmt(d['balanced_accuracy'], 'majority')}"]))
    return lines


def discrimination_section(agents: list[dict]) -> list[str]:
    """Acceptance of counterfactual probe items (the ``probe`` part)."""
    lines = _table("Counterfactual discrimination (recommenders built to match or contradict the target attributes; "
                   "co-liked / co-disliked: what the target's MovieLens fans love / dislike, a rule disjoint from the "
                   "training negatives). A cell marked † is *by construction* for that agent: its training or prompt "
                   "used the rule that defines the figure (the hint column says which); such cells never count as "
                   "the agent beating another.",
                   ["agent", "matching", "contradicting", "popular", "random", "gap (n)", "AUC of match", "co-liked",
                    "co-disliked", "disjoint gap (n)", "hint"])
    for a in agents:
        d = a["discrimination"] or {}
        rates = d.get("rates", {})
        built = set((a.get("hint_use") or {}).get("by_construction", []))

        def mark(key: str, text: str) -> str:
            return f"{text} †" if key in built and text != "-" else text

        gap, dgap = d.get("gap") or {}, d.get("disjoint_gap") or {}
        lines.append(_row([a["agent"],
                           *(mark(k, fmt(rates.get(k), "accept_rate")) for k in ("matching", "contradicting",
                                                                                   "popular", "random")),
                           f"{mark('gap', fmt(gap))} ({gap.get('n', 0)})", mark("match_auc", num(d.get("match_auc"))),
                           *(fmt(rates.get(k), "accept_rate") for k in ("co-liked", "co-disliked")),
                           f"{fmt(dgap)} ({dgap.get('n', 0)})",
                           "; ".join((a.get("hint_use") or {}).get("uses", [])) or "-"]))
    return lines


def likelihood_section(agents: list[dict]) -> list[str]:
    """The likelihood of the real user turns (the ``nll`` part)."""
    lines = _table("Likelihood of the real user turns under each agent's model (lower is closer to people; "
                   "rule agents have no model). Agents serialise a turn into different numbers of tokens (added "
                   "action tokens vs tags spelled out), so compare them by NLL per turn:",
                   ["agent", "turns", "tokens", "NLL per turn (nats)", "NLL per token", "perplexity"])
    for a in agents:
        x = a.get("likelihood") or {}
        per_turn = x.get("nll_per_turn")
        if per_turn is None and x.get("nll_per_token") is not None and x.get("scored_turns"):
            per_turn = x["nll_per_token"] * x["tokens"] / x["scored_turns"]  # metrics written before the field
        lines.append(_row([a["agent"], x.get("scored_turns", 0), x.get("tokens", 0), num(per_turn),
                           num(x.get("nll_per_token")), num(x.get("perplexity"))]))
    return lines


def replay_section(agents: list[dict]) -> list[str]:
    """Behaviour against people and simulator faults in replayed dialogues (the ``replay`` part)."""
    lines = _table("Behaviour vs people (Jensen-Shannon divergence, 0 = same distribution; replayed dialogues):",
                   ["agent", "actions by position", "turns per dialogue", "words per turn",
                    "non-committal sim / human"])
    for a in agents:
        b = a["behaviour"]
        lines.append(_row([a["agent"], num(b["js_actions_by_position"]), num(b["js_turns_per_dialogue"]),
                           num(b["js_words_per_turn"]),
                           f"{num(b['noncommittal_simulated'])} / {num(b['noncommittal_human'])}"]))
    lines += ["", *_table("Behaviour figures beside people's on the same replayed dialogues (simulated / human; word "
                          "3-grams; interplay.metrics.behaviour): repeated n-grams within a user turn, share of a user "
                          "turn copied from the recommender's turn before it, user turns repeating an earlier user "
                          "turn, words per user turn, turns per dialogue:",
                          ["agent", "repeated n-grams", "copied from partner", "self-repeats", "words per turn",
                           "turns per dialogue"])]
    for a in agents:
        f = a["behaviour"].get("figures")
        if f:
            lines.append(_row([a["agent"], *(beside(f, key, "user") for key in (
                "repeated_ngram_share", "copied_share", "self_repeat_rate", "words_per_turn")),
                beside(f, "turns_per_episode")]))
    lines += ["", *_table("Simulator faults in replayed episodes (share of episodes; examples):",
                          ["agent", "episodes", "SR / ET / FR", "any fault", "failed runs with a simulator fault",
                           "kinds"])]
    for a in agents:
        f, r = a["simulator_faults"], a["replay"]
        kinds = "; ".join(f"{k} {v['episodes']} ({', '.join(v['examples'])})" for k, v in f["kinds"].items() if v["episodes"])
        lines.append(_row([a["agent"], f["episodes"], f"{num(r.get('SR'))} / {num(r.get('ET'))} / {num(r.get('FR'))}",
                           num(f["any_fault"]), num(f["failed_runs_simulator_share"]), kinds or "-"]))
    return lines


def downstream_section(rows: list[dict]) -> list[str]:
    """RecSims trained on each user agent's simulated dialogues, evaluated on human ones."""
    lines = _table("Downstream utility: a RecSim trained on the dialogues each user agent simulated (same size, "
                   "same recipe) and on real ones, evaluated on held-out human dialogues (recommendations forced at "
                   "the recorded turns; n = turns):",
                   ["trained on", "user agent", "simulated with", "train dialogues", "MatchScore", "Recall@1",
                    "Recall@10", "n", "folder"])
    for r in rows:
        lines.append(_row([r["trained_on"], r["user"] or "-", r["simulated_with"] or "-",
                           "-" if r["train_records"] is None else r["train_records"], fmt(r["matchscore"]),
                           fmt(r["recall@1"]), fmt(r["recall@10"]), r["turns"], f"`{r['folder']}`"]))
    return lines


def scorecard_markdown(card: dict) -> str:
    """The scorecard as markdown: each scorecard part's section over the agents' cards (every
    interval a 95% bootstrap, n beside each figure), then the downstream table if any."""
    c = card["config"]
    lines = [f"# Fidelity scorecard: {c['data']} ({c['split']})"]
    for part in scorecard_parts():
        if part.section is not None:
            lines += ["", *part.section(card["agents"])]
    if card.get("downstream"):
        lines += ["", *downstream_section(card["downstream"])]
    return "\n".join(lines) + "\n"


def plot_scorecard(card: dict, path: Path) -> None:
    """User agents as rows, the scorecard parts' figures as columns, 95% intervals drawn."""
    from interplay.evaluation.agent_report import _plt

    columns = [col for part in scorecard_parts() for col in part.columns]
    down = {r["user"]: r["matchscore"] for r in card.get("downstream") or [] if r["user"]}
    real = next((r["matchscore"]["value"] for r in card.get("downstream") or [] if r["trained_on"] == "real"), None)
    if down:  # the line: the RecSim trained on real dialogues
        columns.append(ScorecardColumn("RecSim on its dialogues: MatchScore", lambda a: down.get(a["agent"]),
                                       reference=real))
    agents = card["agents"]
    plt = _plt(path)
    fig, axes = plt.subplots(1, max(1, len(columns)), figsize=(2.4 * max(1, len(columns)), 0.6 + 0.55 * len(agents)),
                             sharey=True, squeeze=False)
    for ax, col in zip(axes[0], columns):
        for y, a in enumerate(agents):
            f = col.get(a) or {}
            if f.get("value") is None:
                continue
            ci = f.get("ci95") or (f["value"], f["value"])
            ax.errorbar([f["value"]], [y], xerr=[[f["value"] - ci[0]], [ci[1] - f["value"]]], fmt="o", capsize=3,
                        color=f"C{y % 10}")  # one colour per agent in every column
        ax.set_title(col.title, fontsize=8)
        ax.set_xlim(col.lo, 1)
        if col.reference is not None:
            ax.axvline(col.reference, color="grey", lw=0.6, ls="--")
    axes[0][0].set_yticks(range(len(agents)), [a["agent"][-28:] for a in agents], fontsize=7)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
