"""Statistics of a head-to-head study, as the paper reports them.

The unit of the tests is the pair, not the judgement: the judges of one pair read the same two
dialogues, and the six criteria of one judgement are answered together, so neither is an
independent trial. Per criterion, each pair gets one verdict, the majority of its judges' picks
(:func:`majority`): ``A``, ``B``, or ``tie`` when no pick has more judges than every other (judges
split evenly, or ``tie`` picks prevail). The figures per criterion are the pairs won by A and by B,
the tied pairs, the win ratio of A over the pairs with a verdict (n), its 95% Wilson score interval
and the two-sided exact binomial test of A's wins among those n pairs against p = 0.5. Tied pairs
are counted and left out of the test. No test pools the criteria (they are correlated answers on
the same pairs). Agreement between judges is Krippendorff's alpha (nominal, values A / B / tie):
per criterion with the pairs as units, and once over all (pair, criterion) units.

Every figure is a function of the set of judgements: they are sorted by pair and judge first, and
a (judge, pair, criterion) given twice is an error.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

from interplay.run_folder import write_json_atomic

SIGNIFICANCE = 0.05
CONFIDENCE = 0.95
CHOICES = ("A", "B", "tie")
RESULT_FILES = ("results.json", "judgements.csv", "verdicts.csv", "results.csv", "results.png")


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
    """The figures of one criterion, over pairs (one majority verdict per pair)."""

    key: str
    name: str
    wins_a: int  # pairs whose verdict is A
    wins_b: int  # pairs whose verdict is B
    ties: int  # judged pairs with no verdict (judges split evenly, or tie picks prevail): not tested
    n: int  # pairs with a verdict: wins_a + wins_b
    win_ratio_a: float | None  # wins_a / n; None when n = 0
    ci_low: float | None  # 95% Wilson score interval of win_ratio_a; None when n = 0
    ci_high: float | None
    p_value: float | None  # two-sided exact binomial test of wins_a of n pairs at p = 0.5; None when n = 0
    significant: bool  # p < 0.05
    alpha: float | None  # Krippendorff's alpha (nominal) between judges, pairs as units; None when undefined


@dataclass
class StudyResults:
    """Every criterion's figures (no pooled row), the judges' agreement over all (pair, criterion)
    units, each judge's progress, and each pair's verdict per criterion."""

    title: str
    name_a: str
    name_b: str
    rows: list[CriterionResult]
    overall_alpha: float | None = None  # Krippendorff's alpha over every (pair, criterion) unit: agreement, no test
    progress: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    verdicts: list[dict] = field(default_factory=list)  # see :func:`pair_verdicts`

    def row(self, key: str) -> CriterionResult:
        """The row of criterion ``key`` (KeyError: no such criterion; there is no pooled row)."""
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(f"no criterion {key!r} in the results")

    def to_dict(self) -> dict:
        return {"title": self.title, "name_a": self.name_a, "name_b": self.name_b,
                "criteria": [asdict(r) for r in self.rows], "overall_alpha": self.overall_alpha,
                "progress": self.progress, "study": self.meta, "verdicts": self.verdicts}


def binomial_p(wins_a: int, n: int) -> float | None:
    """Two-sided exact binomial test of ``wins_a`` successes in ``n`` trials at p = 0.5 (None: n = 0)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(wins_a, n, 0.5, alternative="two-sided").pvalue)


def binomial_ci(wins_a: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval of the proportion ``wins_a / n`` (None: n = 0)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(wins_a, n, 0.5).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def majority(picks: Sequence[str]) -> str:
    """One pair's verdict from its judges' picks (``A``, ``B``, ``tie``): the pick more judges made
    than any other; ``tie`` when two picks share the most judges (e.g. one A and one B) or when
    ``tie`` is the most frequent pick. Picks may come in any order."""
    if not picks:
        raise ValueError("majority: no pick")
    counts = Counter(picks)
    bad = sorted(set(counts) - set(CHOICES))
    if bad:
        raise ValueError(f"majority: unknown pick {bad[0]!r} (expected A, B or tie)")
    top = max(counts.values())
    leaders = [c for c in CHOICES if counts[c] == top]
    return leaders[0] if len(leaders) == 1 else "tie"


def verdict_row(key: str, name: str, verdicts: Sequence[str], alpha: float | None = None) -> CriterionResult:
    """Counts, win ratio, interval and binomial test of one verdict per pair (``A``, ``B``, ``tie``)."""
    wins_a, wins_b = verdicts.count("A"), verdicts.count("B")
    ties = len(verdicts) - wins_a - wins_b
    n = wins_a + wins_b
    p = binomial_p(wins_a, n)
    ci = binomial_ci(wins_a, n)
    return CriterionResult(key, name, wins_a, wins_b, ties, n, wins_a / n if n else None,
                           ci[0] if ci else None, ci[1] if ci else None, p,
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


def _choices(rows: Sequence[dict], criteria: Sequence[CriterionLike]) -> dict[tuple[str, str, str], str]:
    """``(pair_id, judge, criterion) -> choice`` of the rows on ``criteria``, in sorted key order;
    ValueError on a key given twice or a choice other than A / B / tie."""
    keys = {c.key for c in criteria}
    out: dict[tuple[str, str, str], str] = {}
    for r in rows:
        if r["criterion"] not in keys:
            continue
        k = (str(r["pair_id"]), str(r["judge"]), r["criterion"])
        if k in out:
            raise ValueError(f"judge {k[1]!r} judged pair {k[0]!r} on {k[2]!r} twice")
        if r["choice"] not in CHOICES:
            raise ValueError(f"judge {k[1]!r}, pair {k[0]!r}, {k[2]!r}: choice {r['choice']!r} (expected A, B or tie)")
        out[k] = r["choice"]
    return dict(sorted(out.items()))


def pair_verdicts(rows: Sequence[dict], criteria: Sequence[CriterionLike]) -> list[dict]:
    """One row per judged (pair, criterion), by pair id then criterion: pair_id, record_id,
    criterion, verdict (:func:`majority` of the judges' picks), and how many judges picked A, B
    and tie."""
    by = _choices(rows, criteria)
    records = {str(r["pair_id"]): r.get("record_id", "") for r in rows}
    picks: dict[tuple[str, str], list[str]] = {}
    for (pair, _judge, crit), choice in by.items():
        picks.setdefault((pair, crit), []).append(choice)
    order = {c.key: i for i, c in enumerate(criteria)}
    out = []
    for (pair, crit), got in sorted(picks.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        out.append({"pair_id": pair, "record_id": records.get(pair, ""), "criterion": crit, "verdict": majority(got),
                    "judges_a": got.count("A"), "judges_b": got.count("B"), "judges_tie": got.count("tie")})
    return out


def summarize_judgements(rows: Sequence[dict], criteria: Sequence[CriterionLike]) -> list[CriterionResult]:
    """The rows of :meth:`Study.judgements` (judge, pair_id, criterion, choice) as one result per
    criterion, over pairs: each judged pair's majority verdict, the binomial test over the pairs
    with a verdict, and the judges' agreement with the pairs as units. No pooled row."""
    by = _choices(rows, criteria)
    judges = sorted({j for _, j, _ in by})
    pairs = sorted({p for p, _, _ in by})
    verdicts = pair_verdicts(rows, criteria)
    out = []
    for c in criteria:
        table = [[by.get((p, j, c.key)) for p in pairs] for j in judges]
        out.append(verdict_row(c.key, c.name, [v["verdict"] for v in verdicts if v["criterion"] == c.key],
                               nominal_alpha(table)))
    return out


def overall_alpha(rows: Sequence[dict], criteria: Sequence[CriterionLike]) -> float | None:
    """Krippendorff's alpha (nominal) between judges over every (pair, criterion) unit: how much the
    judges agree across the study. It is an agreement figure only; no test pools the criteria."""
    by = _choices(rows, criteria)
    judges = sorted({j for _, j, _ in by})
    units = sorted({(p, k) for p, _, k in by})
    return nominal_alpha([[by.get((p, j, k)) for p, k in units] for j in judges])


def study_results(study: StudyLike) -> StudyResults:
    """A study's results from its stored judgements."""
    m = study.meta
    rows = study.judgements()
    return StudyResults(m["title"], m["name_a"], m["name_b"], summarize_judgements(rows, study.criteria),
                        overall_alpha(rows, study.criteria), study.progress(),
                        {k: m[k] for k in ("run_a", "run_b", "data", "split", "allow_tie", "seed", "created", "counts",
                                           "left_out")},
                        pair_verdicts(rows, study.criteria))


def write_results(study: StudyLike, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``judgements.csv`` (every judge's choice), ``verdicts.csv`` (each
    pair's majority verdict per criterion, what the tests count), ``results.csv`` (one row per
    criterion) and ``results.png`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = study_results(study)
    paths = {name: out / name for name in RESULT_FILES}
    write_json_atomic(paths["results.json"], results.to_dict())
    _write_csv(paths["judgements.csv"], study.judgements(),
               ["judge", "pair_id", "record_id", "criterion", "choice", "left_side", "comment", "time", "revisions"])
    _write_csv(paths["verdicts.csv"], results.verdicts,
               ["pair_id", "record_id", "criterion", "verdict", "judges_a", "judges_b", "judges_tie"])
    _write_csv(paths["results.csv"], [asdict(r) for r in results.rows], [f.name for f in fields(CriterionResult)])
    plot_results(results, paths["results.png"])
    return paths


def plot_results(results: StudyResults, path: str | Path) -> None:
    """The paper's layout: one horizontal bar per criterion split at A's win ratio over pairs, its
    95% interval as a black line, a line at 0.5, ``*`` beside criteria with p < 0.05."""
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
        labels.append(f"{r.name} (n={r.n} pairs, {r.ties} tied)")
        if r.win_ratio_a is None:
            ax.barh(y, 1, color=empty)
            ax.text(0.5, y, "no pair with a verdict", ha="center", va="center", fontsize=8)
            continue
        share = r.win_ratio_a
        ax.barh(y, share, color=color_a, edgecolor="white")
        ax.barh(y, 1 - share, left=share, color=color_b, edgecolor="white")
        for x, v in ((share / 2, share), (share + (1 - share) / 2, 1 - share)):
            if v >= 0.08:
                ax.text(x, y, f"{v:.0%}", ha="center", va="center", color="white", fontsize=8)
        if r.ci_low is not None and r.ci_high is not None:
            ax.errorbar(share, y, xerr=[[share - r.ci_low], [r.ci_high - share]], fmt="none", ecolor="black",
                        elinewidth=1, capsize=3)
        if r.significant:
            ax.text(1.01, y, "*", ha="left", va="center", fontsize=14, fontweight="bold")
    ax.axvline(0.5, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), list(reversed(labels)), fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of pairs won (one majority verdict per pair, tied pairs left out), 95% Wilson interval\n"
                  "* p < 0.05, two-sided exact binomial test over pairs, per criterion (none pooled)", fontsize=8)
    ax.set_title(results.title, fontsize=10, pad=28)
    ax.legend(handles=[Patch(color=color_a, label=f"A: {results.name_a}"), Patch(color=color_b, label=f"B: {results.name_b}")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


#: what makes a spreadsheet read a cell as a formula (CSV injection)
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet reads as text: a string starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'`` (OWASP's advice); numbers and other text are unchanged."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def _write_csv(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in r.items()} for r in rows)
