"""The ``interplay`` command line, one module per command group: :mod:`~interplay.cli.simulate`
(simulate, show), :mod:`~interplay.cli.data`, :mod:`~interplay.cli.evaluate`,
:mod:`~interplay.cli.train` (train, train-unicrs, matchscore), :mod:`~interplay.cli.studio` (the web app) and
:mod:`~interplay.cli.study` (head-to-head human studies). Options take their defaults, help
and bounds from the config they fill (:func:`~interplay.cli.app.option`)."""

from interplay.cli import data, docs, evaluate, simulate, study, studio, train
from interplay.cli.app import app, console

__all__ = ["app", "console", "data", "docs", "evaluate", "main", "simulate", "studio", "study", "train"]


def main() -> None:
    """The console entry point."""
    app()
