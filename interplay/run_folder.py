"""Run folders: the one place that prepares a folder for a run or an evaluation, resumes it, and
writes its files so that a killed process never leaves half a line or half a file.

- :func:`prepare_run_folder`: refuse a folder that holds another run (without ``resume``) or a run
  whose settings differ (a config's ``identity()``: its fields minus those a resumption may
  change; fields in a config's ``GROWS_ON_RESUME`` may rise or be lifted, never fall); write
  ``config.json`` atomically.
- :class:`JsonlLog`: append-only JSONL, one fsync'd line per item; a partial last line (a process
  killed while writing) is dropped on open.
- :func:`write_json_atomic`: a JSON file written through a temporary file and a rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

CONFIG_FILE = "config.json"


class RunDirError(ValueError):
    """The run folder cannot be used as asked (it holds another run, or a resumption whose settings differ)."""


class RunFolderTaken(RunDirError, FileExistsError):
    """The folder already holds a run and ``resume`` was not asked for."""


C = TypeVar("C", bound=BaseModel)


def prepare_run_folder(folder: str | Path, cfg: C, resume: bool, what: str = "run",
                       marks: tuple[str, ...] = ()) -> Path:
    """Create ``folder`` for ``cfg``, or check that it resumes the same settings.

    ``marks``: files whose non-empty presence means the folder already holds a ``what`` even
    without its config (a log left by a crash). Raises :class:`RunDirError` naming the settings
    that differ, or saying to pass ``--resume``."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    held = config_path.exists() or any((folder / m).exists() and (folder / m).stat().st_size > 0 for m in marks)
    if held and not resume:
        raise RunFolderTaken(f"{folder} already holds a {what}; pass --resume to continue it or choose another --out")
    if config_path.exists():
        read = getattr(type(cfg), "read_saved", type(cfg).model_validate_json)
        old = read(config_path.read_text())
        growable = getattr(type(cfg), "GROWS_ON_RESUME", frozenset())
        before = old.identity()
        diff = sorted(k for k, v in cfg.identity().items()
                      if before.get(k) != v and not (k in growable and _grew(before.get(k), v)))
        if diff:
            raise RunDirError(f"{config_path}: cannot resume, these settings differ: {', '.join(diff)}")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config_path, cfg.model_dump(mode="json"))
    return folder


def _grew(old, new) -> bool:
    """A limit that rose or was lifted (None: no limit), or a list that gained entries (parts added
    to an evaluation): what was done under the old value stays valid."""
    if isinstance(old, list) and isinstance(new, list):
        return set(new) >= set(old)
    return new is None or (old is not None and new >= old)


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write JSON to ``path`` through a temporary file, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def drop_partial_tail(path: Path) -> None:
    """Cut a JSONL file after its last complete line (a run killed while writing leaves half a line)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


class JsonlLog:
    """An append-only JSONL file: one fsync'd line per :meth:`append`; on open, a partial last line
    left by a killed process is dropped, so the file always holds whole lines only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        drop_partial_tail(self.path)
        self._fh = self.path.open("a", encoding="utf-8")

    def lines(self) -> list[tuple[int, str]]:
        """(line number, text) of every non-blank line written so far."""
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8").splitlines()
        return [(i, line) for i, line in enumerate(text, start=1) if line.strip()]

    def append(self, line: str) -> None:
        self._fh.write(line.rstrip("\n") + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
