"""The ``interplay`` command line, one module per command group: :mod:`~interplay.cli.simulate`
(simulate, show), :mod:`~interplay.cli.data`, :mod:`~interplay.cli.evaluate`,
:mod:`~interplay.cli.train` (train, train-unicrs, matchscore). Options take their defaults, help
and bounds from the config they fill (:func:`~interplay.cli.app.option`)."""

from interplay.cli import data, evaluate, simulate, train
from interplay.cli.app import app, console

__all__ = ["app", "console", "data", "evaluate", "main", "simulate", "train"]


def main() -> None:
    """The console entry point."""
    app()
