"""Statistics of a head-to-head study, as the paper reports them.

Per criterion: the wins of A and of B and the ties over all judgements (every judge's choice on
every pair counts once), the win ratio of A over the non-tie judgements, and the two-sided exact
binomial test of A's wins against p = 0.5; ``overall`` pools every criterion. Agreement between
judges is Krippendorff's alpha (nominal, values A / B / tie): per criterion with the pairs as
units, overall with the (pair, criterion) units.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

from interplay.run_folder import write_json_atomic

OVERALL = "overall"
SIGNIFICANCE = 0.05
RESULT_FILES = ("results.json", "judgements.csv", "results.csv", "results.png")


class CriterionLike(Protocol):
    """What the statistics read of a criterion (:class:`interplay.studio.study.Criterion`)."""

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...


class StudyLike(Protocol):
    """What the statistics read of a study (:class:`interplay.studio.study.Study`, which imports
    this module: it is not imported back)."""

    @property
    def meta(self) -> dict: ...

    @property
    def criteria(self) -> Sequence[CriterionLike]: ...

    def judgements(self) -> list[dict]: ...

    def progress(self) -> list[dict]: ...


@dataclass
class CriterionResult:
    """The figures of one criterion (or of all pooled: key ``overall``)."""

    key: str
    name: str
    wins_a: int
    wins_b: int
    ties: int
    n: int  # judgements that are not ties
    win_ratio_a: float | None  # wins_a / n; None when n = 0
    p_value: float | None  # two-sided exact binomial test of wins_a of n at p = 0.5
    significant: bool  # p < 0.05
    alpha: float | None  # Krippendorff's alpha (nominal) between judges; None when undefined


@dataclass
class StudyResults:
    """Every criterion's figures (the ``overall`` row last) and each judge's progress."""

    title: str
    name_a: str
    name_b: str
    rows: list[CriterionResult]
    progress: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def row(self, key: str) -> CriterionResult:
        """The row of criterion ``key`` (or ``overall``)."""
        return next(r for r in self.rows if r.key == key)

    def to_dict(self) -> dict:
        return {"title": self.title, "name_a": self.name_a, "name_b": self.name_b,
                "criteria": [asdict(r) for r in self.rows], "progress": self.progress, "study": self.meta}


def binomial_p(wins_a: int, n: int) -> float | None:
    """Two-sided exact binomial test of ``wins_a`` successes in ``n`` trials at p = 0.5 (None: n = 0)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(wins_a, n, 0.5, alternative="two-sided").pvalue)


def win_row(key: str, name: str, choices: Sequence[str], alpha: float | None = None) -> CriterionResult:
    """Counts, win ratio and test of a list of choices (``A``, ``B``, ``tie``)."""
    wins_a, wins_b = choices.count("A"), choices.count("B")
    ties = len(choices) - wins_a - wins_b
    n = wins_a + wins_b
    p = binomial_p(wins_a, n)
    return CriterionResult(key, name, wins_a, wins_b, ties, n, wins_a / n if n else None, p,
                           p is not None and p < SIGNIFICANCE, alpha)


def nominal_alpha(ratings: Sequence[Sequence[str | None]]) -> float | None:
    """Krippendorff's alpha (nominal) of ``ratings[judge][unit]`` (None: missing). None when it is
    undefined: no unit rated by two judges, or a single value among the units that are."""
    import krippendorff
    import numpy as np

    pairable = [[r[u] for r in ratings if r[u] is not None] for u in range(len(ratings[0]) if ratings else 0)]
    pairable = [vals for vals in pairable if len(vals) >= 2]
    values = sorted({v for vals in pairable for v in vals})
    if len(values) < 2:
        return None
    code = {v: float(i) for i, v in enumerate(values)}
    data = np.array([[code.get(v, np.nan) if v is not None else np.nan for v in r] for r in ratings], dtype=float)
    alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return None if math.isnan(alpha) else alpha


def summarize_judgements(rows: Sequence[dict], criteria: Sequence[CriterionLike]) -> list[CriterionResult]:
    """The rows of :meth:`Study.judgements` (judge, pair_id, criterion, choice) as one result per
    criterion and an ``overall`` row."""
    judges = sorted({r["judge"] for r in rows})
    units = sorted({(r["pair_id"], r["criterion"]) for r in rows})
    pairs = sorted({p for p, _ in units})
    by = {(r["judge"], r["pair_id"], r["criterion"]): r["choice"] for r in rows}
    out = []
    for c in criteria:
        choices = [r["choice"] for r in rows if r["criterion"] == c.key]
        table = [[by.get((j, p, c.key)) for p in pairs] for j in judges]
        out.append(win_row(c.key, c.name, choices, nominal_alpha(table)))
    keys = {c.key for c in criteria}
    pooled = [r["choice"] for r in rows if r["criterion"] in keys]
    table = [[by.get((j, p, k)) for p, k in units if k in keys] for j in judges]
    out.append(win_row(OVERALL, "Overall", pooled, nominal_alpha(table)))
    return out


def study_results(study: StudyLike) -> StudyResults:
    """A study's results from its stored judgements."""
    m = study.meta
    return StudyResults(m["title"], m["name_a"], m["name_b"], summarize_judgements(study.judgements(), study.criteria),
                        study.progress(), {k: m[k] for k in ("run_a", "run_b", "data", "split", "allow_tie", "seed",
                                                             "created", "counts", "left_out")})


def write_results(study: StudyLike, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``judgements.csv``, ``results.csv`` and ``results.png`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = study_results(study)
    paths = {name: out / name for name in RESULT_FILES}
    write_json_atomic(paths["results.json"], results.to_dict())
    _write_csv(paths["judgements.csv"], study.judgements(),
               ["judge", "pair_id", "record_id", "criterion", "choice", "left_side", "comment", "time", "revisions"])
    _write_csv(paths["results.csv"], [asdict(r) for r in results.rows], [f.name for f in fields(CriterionResult)])
    plot_results(results, paths["results.png"])
    return paths


def plot_results(results: StudyResults, path: str | Path) -> None:
    """The paper's layout: one horizontal bar per criterion split at A's win ratio, a line at 0.5,
    ``*`` beside criteria with p < 0.05."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    color_a, color_b, empty = "#4c72b0", "#dd8452", "#dddddd"
    rows = results.rows
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.8))
    labels = []
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        labels.append(f"{r.name} (n={r.n})")
        if r.win_ratio_a is None:
            ax.barh(y, 1, color=empty)
            ax.text(0.5, y, "no judgements", ha="center", va="center", fontsize=8)
            continue
        share = r.win_ratio_a
        ax.barh(y, share, color=color_a, edgecolor="white")
        ax.barh(y, 1 - share, left=share, color=color_b, edgecolor="white")
        for x, v in ((share / 2, share), (share + (1 - share) / 2, 1 - share)):
            if v >= 0.08:
                ax.text(x, y, f"{v:.0%}", ha="center", va="center", color="white", fontsize=8)
        if r.significant:
            ax.text(1.01, y, "*", ha="left", va="center", fontsize=14, fontweight="bold")
    if rows and rows[-1].key == OVERALL and len(rows) > 1:
        ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), list(reversed(labels)), fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of wins, ties left out (* p < 0.05, two-sided binomial test)")
    ax.set_title(results.title, fontsize=10, pad=28)
    ax.legend(handles=[Patch(color=color_a, label=f"A: {results.name_a}"), Patch(color=color_b, label=f"B: {results.name_b}")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _write_csv(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows)
