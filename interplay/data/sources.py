"""Data sources: a name -> a loader of :class:`~interplay.data.schema.DialogueRecord`\\ s.

A new source is one loader module and one registration::

    from interplay.data.sources import SourceContext, register_source

    def load_mine(path, ctx: SourceContext):
        for lineno, line in enumerate(open(path), start=1):
            ...
            yield build_record(...)          # interplay.data.raw_dialogue

    register_source("mine", load_mine, "my dialogues: one JSON object per line")

``interplay data build --source mine`` then finds it once the module is imported, and
``--source my_package.my_module:load_mine`` imports a loader by its path without registering it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from interplay.catalogue import Catalogue
from interplay.data.schema import DialogueRecord


@dataclass
class SourceContext:
    """What a loader gets besides the path: the item catalogue to match titles against, where to
    send a malformed record (``on_error(DataFormatError)``; ``None``: raise it), the dialogue-act
    annotator for sources without gold acts, and source-specific options."""

    catalogue: Catalogue
    on_error: Callable | None = None
    annotator: Callable | None = None
    options: dict = field(default_factory=dict)


Loader = Callable[[Path, SourceContext], Iterable[DialogueRecord]]


@dataclass(frozen=True)
class DataSource:
    """A registered source."""

    name: str
    loader: Loader
    description: str = ""


_SOURCES: dict[str, DataSource] = {}


def register_source(name: str, loader: Loader, description: str = "") -> None:
    """Make ``name`` a source of ``interplay data build`` (a second registration replaces the first)."""
    if not name or ":" in name:
        raise ValueError(f"source name {name!r}: must be non-empty and without ':'")
    _SOURCES[name] = DataSource(name, loader, description)


def unregister_source(name: str) -> None:
    _SOURCES.pop(name, None)


def source_names() -> list[str]:
    return list(_SOURCES)


def get_source(name: str) -> DataSource:
    """A registered source, or ``module.path:function`` imported as a loader."""
    if name in _SOURCES:
        return _SOURCES[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            loader = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"source {name!r}: cannot import the loader ({exc})") from None
        return DataSource(name, loader)
    raise ValueError(f"unknown source {name!r}; choose from {', '.join(_SOURCES)} or give module:function")


# -- the built-in sources (imported when used) --------------------------------------------------

def _redial(path: Path, ctx: SourceContext):
    from interplay.data.redial import load_redial

    return load_redial(path, ctx.catalogue, on_error=ctx.on_error, annotator=ctx.annotator)


def _inspired(path: Path, ctx: SourceContext):
    from interplay.data.inspired import load_inspired

    return load_inspired(path, ctx.catalogue, on_error=ctx.on_error, annotator=ctx.annotator)


def _iard(path: Path, ctx: SourceContext):
    from interplay.data.iard import load_iard

    return load_iard(path, ctx.catalogue, on_error=ctx.on_error, annotator=ctx.annotator)


def _pearl(path: Path, ctx: SourceContext):
    from interplay.data.pearl import load_pearl

    return load_pearl(path, ctx.catalogue, field_map=ctx.options.get("field_map"), on_error=ctx.on_error,
                      report=ctx.options.get("pearl_report"), annotator=ctx.annotator)


def _episodes(path: Path, ctx: SourceContext):
    from interplay.data.simulated import load_episodes

    return load_episodes(path, ctx.catalogue, on_error=ctx.on_error)


register_source("redial", _redial, "ReDial: a folder of {train,valid,test}_data.jsonl (any subset), or one file")
register_source("inspired", _inspired, "INSPIRED: the dialogue TSV files")
register_source("iard", _iard, "IARD: ReDial dialogues with gold dialogue acts")
register_source("pearl", _pearl, "PEARL: JSONL in the published field names (--field-map for other exports)")
register_source("episodes", _episodes, "simulated dialogues: the episode log of an 'interplay simulate' run")
