"""The ``interplay`` application, its console, and what every command shares: options drawn from
the configs' fields, and one way to turn bad input into one clear line and exit code 2."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Interplay: simulate conversational recommendation.")
console = Console()
#: tables in the paper's layout are wide; off a terminal (logs, CI) do not squeeze them
wide = console if console.is_terminal else Console(width=200)


@app.callback()
def _root() -> None:
    """Interplay: simulate conversational recommendation with independent LLM agents."""


def option(config: type, name: str, *param_decls: str, **overrides: Any) -> Any:
    """A typer option whose default, help text and bounds come from field ``name`` of ``config``
    (a pydantic model: ``Field(default, ge=, le=, description=)``; a dataclass:
    ``field(default, metadata={"help", "min", "max"})``), so the config is the one source of an
    option's meaning. ``overrides`` replace any of them (e.g. a list default given as a string)."""
    if dataclasses.is_dataclass(config):
        f = {x.name: x for x in dataclasses.fields(config)}[name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = ...
        meta = dict(f.metadata)
        help_text, bounds = meta.get("help"), {k: meta[k] for k in ("min", "max") if k in meta}
    elif isinstance(config, type) and issubclass(config, BaseModel):
        f = config.model_fields[name]
        default = ... if f.is_required() else f.get_default(call_default_factory=True)
        help_text, bounds = f.description, {}
        for m in f.metadata:
            if getattr(m, "ge", None) is not None:
                bounds["min"] = m.ge
            if getattr(m, "le", None) is not None:
                bounds["max"] = m.le
    else:
        raise TypeError(f"{config!r} is neither a pydantic model nor a dataclass")
    kwargs: dict[str, Any] = {"help": help_text, **bounds}
    kwargs.update(overrides)
    return typer.Option(kwargs.pop("default", default), *param_decls, **kwargs)


def describe(exc: BaseException) -> str:
    """An error as one line: a pydantic validation error as ``field: message; ...``."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<config>'}: {e['msg'].removeprefix('Value error, ')}"
                         for e in exc.errors())
    return str(exc)


def fail(exc: BaseException | str) -> None:
    """Print one clear error line and exit with code 2."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(exc if isinstance(exc, str) else describe(exc))}")
    raise typer.Exit(2)


@contextmanager
def bad_input(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the given exception kinds (bad input: a missing folder, a malformed file, a refused
    setting) into :func:`fail`; anything else is a bug and keeps its traceback."""
    try:
        yield
    except kinds as exc:
        fail(exc)
