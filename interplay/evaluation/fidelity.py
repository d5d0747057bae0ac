"""``interplay evaluate fidelity``: one scorecard judging user simulators against people.

For each user agent, on the same real dialogues: an ``evaluate user`` run with the parts the
scorecard reads (replay, human, probe, nll) in ``OUT/<agent>/`` (resumable), then from its logs:
decisions per slice (:mod:`interplay.metrics.fidelity`), counterfactual discrimination
(:mod:`interplay.evaluation.probes`), the likelihood of the real user turns under the agent's
model, the behaviour profile vs people
(:mod:`interplay.evaluation.behaviour_profile`) and the simulator-fault rate
(:mod:`interplay.evaluation.simulator_faults`). Writes ``scorecard.json``, ``scorecard.md`` and
``scorecard.png``. Every input is checked before anything is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from interplay.evaluation.config import EvalConfig

SCORECARD = "scorecard"
PARTS = ["replay", "human", "probe", "nll"]


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
    parts: list[str] = Field(default_factory=lambda: list(PARTS), description="the evaluation parts to run "
                             "(human decisions first on a slow machine; an agent folder holding more parts keeps them)")
    seed: int = 0
    concurrency: int = 16


    @field_validator("parts")
    @classmethod
    def _known_parts(cls, v: list[str]) -> list[str]:
        unknown = [p for p in v if p not in PARTS]
        if unknown or not v:
            raise ValueError(f"parts {unknown or v}: choose from {', '.join(PARTS)}")
        return v


def agent_folder(spec: str) -> str:
    """A folder name for an agent spec (``usersim:runs/ckpt/x`` -> ``usersim-runs-ckpt-x``)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", spec).strip("-") or "agent"


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

    spec = cfg.users[i]
    out = Path(cfg.out) / agent_folder(spec)
    held = json.loads((out / "config.json").read_text()).get("parts", []) if (out / "config.json").is_file() else []
    parts = [p for p in PARTS if p in cfg.parts or p in held]
    return EvalConfig(kind="user", agent=spec, data=cfg.data, split=cfg.split, limit=cfg.limit,
                      out=str(out), parts=parts, decision=cfg.decision,
                      accept_threshold=threshold_of(cfg, i), seed=cfg.seed, concurrency=cfg.concurrency)


def agent_card(folder: Path, records) -> dict:
    """The scorecard row of one finished user evaluation folder."""
    from interplay.episode_log import latest_episodes
    from interplay.evaluation.behaviour_profile import behaviour_profile
    from interplay.evaluation.evaluate import HUMAN_FILE, REPLAY_DIR
    from interplay.evaluation.simulator_faults import simulator_fault_rate
    from interplay.evaluation.probes import hint_use
    from interplay.metrics.fidelity import sliced_decision_figures

    metrics = json.loads((folder / "metrics.json").read_text())
    human = [json.loads(line) for line in (folder / HUMAN_FILE).read_text().splitlines() if line.strip()]
    episodes_path = folder / REPLAY_DIR / "episodes.jsonl"
    episodes = list(latest_episodes(episodes_path)) if episodes_path.exists() else []
    return {
        "agent": metrics["agent"], "folder": str(folder),
        "decisions": sliced_decision_figures([{**r, "accept": r["action"] == "accept"} for r in human]),
        "discrimination": metrics.get("discrimination"),
        "hint_use": hint_use(metrics.get("agent_training"), metrics["agent"]),
        "behaviour": behaviour_profile(episodes, records),
        "simulator_faults": simulator_fault_rate(episodes),
        "likelihood": metrics.get("user_turn_nll"),
        "replay": {k: metrics["replay"].get(k) for k in ("episodes", "SR", "ET", "FR")},
        "decision_method": metrics["human_view"].get("decision_method"),
        "accept_threshold": metrics["settings"].get("accept_threshold"),
    }


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


def _fmt(fig: dict | None, key: str = "value") -> str:
    """A figure with its interval (the interval belongs to ``value`` only)."""
    if not fig or fig.get(key) is None:
        return "-"
    ci = fig.get("ci95") if key in ("value", "accept_rate") else None
    return f"{fig[key]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _beside(figures: dict, key: str, role: str | None = None) -> str:
    """``simulated / human`` value of one behaviour figure (of ``role``'s turns, when given)."""
    def get(side: dict | None):
        return None if side is None else (side[role][key] if role else side[key])

    return f"{_num(get(figures['simulated']))} / {_num(get(figures['human']))}"


def scorecard_markdown(card: dict) -> str:
    """The scorecard as markdown tables (every interval a 95% bootstrap, n beside each figure)."""
    from interplay.metrics.fidelity import SLICES

    c = card["config"]
    lines = [f"# Fidelity scorecard: {c['data']} ({c['split']})", "",
             "Decisions against the humans' accept/reject, per slice set by provenance (n = judged items, "
             "accepts/rejects; dialogues; intervals: 95% dialogue-cluster bootstrap; majority = always the "
             "humans' more frequent decision):", "",
             "| agent | slice | n (acc/rej) | dialogues | agent accepts | accuracy | balanced acc. | kappa | reject F1 | "
             "majority acc. / bal. acc. |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in card["agents"]:
        for s in ("all", *SLICES):
            d = a["decisions"][s]
            if not d.get("n"):
                continue
            lines.append(f"| {a['agent']} | {s} | {d['n']} ({d['human_accepts']}/{d['human_rejects']}) | "
                         f"{d.get('dialogues', '-')} | "
                         f"{d['agent_accepts']} | {_fmt(d['accuracy'])} | {_fmt(d['balanced_accuracy'])} | "
                         f"{_fmt(d['kappa'])} | {_fmt(d['reject_f1'])} | {_fmt(d['accuracy'], 'majority')} / "
                         f"{_fmt(d['balanced_accuracy'], 'majority')} |")
    lines += ["", "Counterfactual discrimination (recommenders built to match or contradict the target attributes; "
              "co-liked / co-disliked: what the target's MovieLens fans love / dislike, a rule disjoint from the "
              "training negatives). A cell marked † is *by construction* for that agent: its training or prompt "
              "used the rule that defines the figure (the hint column says which); such cells never count as "
              "the agent beating another.", "",
              "| agent | matching | contradicting | popular | random | gap (n) | AUC of match | co-liked | "
              "co-disliked | disjoint gap (n) | hint |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in card["agents"]:
        d = a["discrimination"] or {}
        rates = d.get("rates", {})
        built = set((a.get("hint_use") or {}).get("by_construction", []))

        def mark(key: str, text: str) -> str:
            return f"{text} †" if key in built and text != "-" else text

        cells = [mark(k, _fmt(rates.get(k), "accept_rate")) for k in ("matching", "contradicting", "popular", "random")]
        gap, dgap = d.get("gap") or {}, d.get("disjoint_gap") or {}
        co = [_fmt(rates.get(k), "accept_rate") for k in ("co-liked", "co-disliked")]
        lines.append(f"| {a['agent']} | " + " | ".join(cells) + f" | {mark('gap', _fmt(gap))} ({gap.get('n', 0)}) | "
                     f"{mark('match_auc', _num(d.get('match_auc')))} | " + " | ".join(co) +
                     f" | {_fmt(dgap)} ({dgap.get('n', 0)}) | {'; '.join((a.get('hint_use') or {}).get('uses', [])) or '-'} |")
    lines += ["", "Likelihood of the real user turns under each agent's model (lower is closer to people; "
              "rule agents have no model). Agents serialise a turn into different numbers of tokens (added "
              "action tokens vs tags spelled out), so compare them by NLL per turn:", "",
              "| agent | turns | tokens | NLL per turn (nats) | NLL per token | perplexity |",
              "| --- | --- | --- | --- | --- | --- |"]
    for a in card["agents"]:
        x = a.get("likelihood") or {}
        per_turn = x.get("nll_per_turn")
        if per_turn is None and x.get("nll_per_token") is not None and x.get("scored_turns"):
            per_turn = x["nll_per_token"] * x["tokens"] / x["scored_turns"]  # metrics written before the field
        lines.append(f"| {a['agent']} | {x.get('scored_turns', 0)} | {x.get('tokens', 0)} | {_num(per_turn)} | "
                     f"{_num(x.get('nll_per_token'))} | {_num(x.get('perplexity'))} |")
    lines += ["", "Behaviour vs people (Jensen-Shannon divergence, 0 = same distribution; replayed dialogues):", "",
              "| agent | actions by position | turns per dialogue | words per turn | non-committal sim / human |",
              "| --- | --- | --- | --- | --- |"]
    for a in card["agents"]:
        b = a["behaviour"]
        lines.append(f"| {a['agent']} | {_num(b['js_actions_by_position'])} | {_num(b['js_turns_per_dialogue'])} | "
                     f"{_num(b['js_words_per_turn'])} | {_num(b['noncommittal_simulated'])} / "
                     f"{_num(b['noncommittal_human'])} |")
    lines += ["", ("Behaviour figures beside people's on the same replayed dialogues (simulated / human; word "
                   "3-grams; interplay.metrics.behaviour): repeated n-grams within a user turn, share of a user turn "
                   "copied from the recommender's turn before it, user turns repeating an earlier user turn, words per "
                   "user turn, turns per dialogue:"), "",
              "| agent | repeated n-grams | copied from partner | self-repeats | words per turn | turns per dialogue |",
              "| --- | --- | --- | --- | --- | --- |"]
    for a in card["agents"]:
        f = a["behaviour"].get("figures")
        if not f:
            continue
        cells = [_beside(f, key, "user") for key in ("repeated_ngram_share", "copied_share", "self_repeat_rate",
                                                      "words_per_turn")]
        lines.append(f"| {a['agent']} | " + " | ".join(cells) + f" | {_beside(f, 'turns_per_episode')} |")
    lines += ["", "Simulator faults in replayed episodes (share of episodes; examples):", "",
              "| agent | episodes | SR / ET / FR | any fault | failed runs with a simulator fault | kinds |",
              "| --- | --- | --- | --- | --- | --- |"]
    for a in card["agents"]:
        f, r = a["simulator_faults"], a["replay"]
        kinds = "; ".join(f"{k} {v['episodes']} ({', '.join(v['examples'])})" for k, v in f["kinds"].items() if v["episodes"])
        lines.append(f"| {a['agent']} | {f['episodes']} | {_num(r.get('SR'))} / {_num(r.get('ET'))} / "
                     f"{_num(r.get('FR'))} | {_num(f['any_fault'])} | {_num(f['failed_runs_simulator_share'])} | "
                     f"{kinds or '-'} |")
    if card.get("downstream"):
        lines += ["", "Downstream utility: a RecSim trained on the dialogues each user agent simulated (same size, "
                  "same recipe) and on real ones, evaluated on held-out human dialogues (recommendations forced at "
                  "the recorded turns; n = turns):", "",
                  "| trained on | user agent | simulated with | train dialogues | MatchScore | Recall@1 | Recall@10 | "
                  "n | folder |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in card["downstream"]:
            lines.append(f"| {r['trained_on']} | {r['user'] or '-'} | {r['simulated_with'] or '-'} | "
                         f"{r['train_records'] if r['train_records'] is not None else '-'} | {_fmt(r['matchscore'])} | "
                         f"{_fmt(r['recall@1'])} | {_fmt(r['recall@10'])} | {r['turns']} | `{r['folder']}` |")
    return "\n".join(lines) + "\n"


def plot_scorecard(card: dict, path: Path) -> None:
    """User agents as rows, fidelity figures as columns, 95% intervals drawn."""
    from interplay.evaluation.agent_report import _plt

    columns = [("bal. acc. (all)", lambda a: a["decisions"]["all"].get("balanced_accuracy")),
               ("bal. acc. (other unseen)", lambda a: a["decisions"]["other-unseen"].get("balanced_accuracy")),
               ("kappa (all)", lambda a: a["decisions"]["all"].get("kappa")),
               ("reject F1 (all)", lambda a: a["decisions"]["all"].get("reject_f1")),
               ("disjoint gap (co-liked - co-disliked)", lambda a: (a["discrimination"] or {}).get("disjoint_gap"))]
    down = {r["user"]: r["matchscore"] for r in card.get("downstream") or [] if r["user"]}
    real = next((r["matchscore"]["value"] for r in card.get("downstream") or [] if r["trained_on"] == "real"), None)
    if down:
        columns.append(("RecSim on its dialogues: MatchScore", lambda a: down.get(a["agent"])))
    agents = card["agents"]
    plt = _plt(path)
    fig, axes = plt.subplots(1, len(columns), figsize=(2.4 * len(columns), 0.6 + 0.55 * len(agents)), sharey=True,
                             squeeze=False)
    for ax, (name, get) in zip(axes[0], columns):
        for y, a in enumerate(agents):
            f = get(a) or {}
            if f.get("value") is None:
                continue
            ci = f.get("ci95") or (f["value"], f["value"])
            ax.errorbar([f["value"]], [y], xerr=[[f["value"] - ci[0]], [ci[1] - f["value"]]], fmt="o", capsize=3,
                        color=f"C{y % 10}")  # one colour per agent in every column
        ax.set_title(name, fontsize=8)
        ax.set_xlim(-1 if "kappa" in name or "gap" in name else 0, 1)
        ref = real if name.startswith("RecSim") else (0.5 if "bal." in name else 0.0)
        if ref is not None:  # chance, no gap, or the RecSim trained on real dialogues
            ax.axvline(ref, color="grey", lw=0.6, ls="--")
    axes[0][0].set_yticks(range(len(agents)), [a["agent"][-28:] for a in agents], fontsize=7)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
