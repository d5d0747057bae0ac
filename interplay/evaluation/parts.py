"""Evaluation parts: what ``interplay evaluate user --parts`` runs and the fidelity scorecard reads.

A part declares, in one place, how its tasks are built from the records, how the agent under test
is asked (generate a turn, decide by P(accept), score the recorded turn), where its results are
logged (resumable), how they are summarised in ``metrics.json``, and, when it belongs to the
scorecard, the fields it adds to an agent's card, its markdown section and its plot columns.
Register one with :func:`register_part` (docs/fidelity.md, "Adding a figure"); the built-in parts
are in :mod:`interplay.evaluation.user_parts`, registered by the package's ``__init__``.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: how a turn part asks the agent: generate a turn; decide (scored P(accept) when the evaluation
#: scores decisions, else generate); score the recorded turn's likelihood
Ask = Literal["answer", "decide", "likelihood"]


@dataclass
class PartContext:
    """What every part's builder and summary may read: the settings, the folder, the records."""

    cfg: Any  # interplay.evaluation.config.EvalConfig
    out: Path
    records: list
    catalogue: Any  # interplay.catalogue.Catalogue

    @property
    def grounding(self):
        """The catalogue whose facts the user sees beside each recommended title (None: ungrounded)."""
        return self.catalogue if self.cfg.grounded else None

    @functools.cached_property
    def user_turns(self) -> tuple[list, Mapping]:
        """The recorded user turns as single-turn tasks (built once: the ``single`` and ``nll``
        parts both ask about them)."""
        from interplay.evaluation.tasks import user_turn_tasks

        return user_turn_tasks(self.records, self.grounding)

    @property
    def threshold(self) -> float | None:
        """The P(accept) threshold of scored decisions (None: decisions are generated)."""
        return self.cfg.accept_threshold if self.cfg.decision == "score" else None


@dataclass(frozen=True)
class ScorecardColumn:
    """One column of ``scorecard.png``: a figure (``{"value", "ci95"}``) read from an agent's card."""

    title: str
    get: Callable[[dict], dict | None]
    lo: float = 0.0
    reference: float | None = None  # a dashed line: chance, or no gap


class EvalPart:
    """One part of a user evaluation. Subclass for a new way of running tasks (as the replay part
    does); for single-turn tasks declare a :class:`TurnPart`."""

    name: str
    description: str
    label: str  # the progress bar's
    metrics_key: str  # its summary's key in metrics.json
    empty: Any = None  # that key's value when the part did not run
    scorecard: bool = False  # run by 'interplay evaluate fidelity' and shown in its scorecard
    card: Callable[[Path, dict, list], dict] | None = None  # (folder, metrics, records) -> card fields
    section: Callable[[list[dict]], list[str]] | None = None  # agent cards -> scorecard markdown lines
    columns: tuple[ScorecardColumn, ...] = ()

    def open(self, ctx: PartContext):
        """The part's result log in ``ctx.out`` (what a resumed run skips)."""
        raise NotImplementedError

    def close(self, log) -> None:
        log.close()

    def tasks(self, ctx: PartContext) -> tuple[list, Mapping]:
        """The part's tasks and the skipped records by reason."""
        raise NotImplementedError

    def done(self, log, tasks: list) -> int:
        """How many of ``tasks`` the log already holds."""
        raise NotImplementedError

    @property
    def scored(self) -> bool:
        """Whether the part reads model scores (such parts run one after another when decisions
        are scored, so the model server's scoring cache keeps the few dialogues in flight)."""
        return False

    async def run(self, ctx: PartContext, host, tasks: list, log, advance: Callable[[Any], None]) -> None:
        """Ask the agent in ``host`` every task the log lacks."""
        raise NotImplementedError

    def results(self, ctx: PartContext, log, tasks: list) -> list:
        """The finished results, in task order."""
        raise NotImplementedError

    def summarize(self, ctx: PartContext, results: list) -> Any:
        """The part's figures for ``metrics.json``."""
        raise NotImplementedError

    def write(self, ctx: PartContext, results: list, summary: Any, plots: bool) -> None:
        """Files beside ``metrics.json`` (a CSV of the results, plots), given the part's summary."""


@dataclass
class TurnPart(EvalPart):
    """A part made of single-turn tasks (:class:`~interplay.evaluation.tasks.TurnTask`): each task
    one question to the agent, each answer one line of ``file``."""

    name: str
    description: str
    label: str
    metrics_key: str
    build: Callable[[PartContext], tuple[list, Mapping]]
    summary: Callable[[PartContext, list[dict]], Any]
    file: str
    ask: Ask = "answer"
    csv: str | None = None
    empty: Any = None
    scorecard: bool = False
    card: Callable[[Path, dict, list], dict] | None = None
    section: Callable[[list[dict]], list[str]] | None = None
    columns: tuple[ScorecardColumn, ...] = field(default_factory=tuple)

    def open(self, ctx: PartContext):
        from interplay.evaluation.runner import ResultLog

        return ResultLog(ctx.out / self.file)

    def tasks(self, ctx: PartContext) -> tuple[list, Mapping]:
        return self.build(ctx)

    def done(self, log, tasks: list) -> int:
        return sum(t.task_id in log.rows for t in tasks)

    @property
    def scored(self) -> bool:
        return self.ask != "answer"

    async def run(self, ctx: PartContext, host, tasks: list, log, advance) -> None:
        from interplay.evaluation.runner import run_turn_tasks

        cfg = ctx.cfg
        await run_turn_tasks(host, tasks, log, cfg.concurrency, cfg.seed, advance,
                             ctx.threshold if self.ask == "decide" else None,
                             score_reference=self.ask == "likelihood")

    def results(self, ctx: PartContext, log, tasks: list) -> list:
        return [log.rows[t.task_id] for t in tasks if t.task_id in log.rows]

    def summarize(self, ctx: PartContext, results: list) -> Any:
        return self.summary(ctx, results) if results else self.empty

    def write(self, ctx: PartContext, results: list, summary: Any, plots: bool) -> None:
        if self.csv:
            write_csv(ctx.out / self.csv, results)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV (lists and dicts as JSON); an empty file for no rows."""
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows)


_PARTS: dict[str, EvalPart] = {}


def register_part(part: EvalPart, replace: bool = False) -> EvalPart:
    """Add a part to ``interplay evaluate user --parts`` (and, with ``scorecard=True``, to the
    fidelity scorecard); parts keep their registration order in reports, the built-in ones first."""
    if part.name in _PARTS and not replace:
        raise ValueError(f"evaluation part {part.name!r} is already registered")
    _PARTS[part.name] = part
    return part


def unregister_part(name: str) -> None:
    """Remove a registered part (tests; a plug-in replacing a figure)."""
    _PARTS.pop(name, None)


def user_parts() -> dict[str, EvalPart]:
    """Every registered part by name, the built-in ones first (registered when
    :mod:`interplay.evaluation` is imported)."""
    return dict(_PARTS)


def scorecard_parts() -> list[EvalPart]:
    """The parts the fidelity scorecard runs and shows, in order."""
    return [p for p in user_parts().values() if p.scorecard]


def check_parts(names: list[str], scorecard: bool = False) -> list[str]:
    """``names`` if each is a registered part (of the scorecard, with ``scorecard``); else a
    ValueError listing the choices."""
    known = [p.name for p in (scorecard_parts() if scorecard else user_parts().values())]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"parts {unknown or names}: choose from {', '.join(known)}")
    return names
