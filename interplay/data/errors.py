"""Errors of data that cannot be used: they name the file (the line and the field where there is one)."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file or folder cannot be used; the message names it (and the field)."""


class DataFormatError(DataError):
    """A record of a source file is malformed: the message names the file, the line and the field."""

    def __init__(self, path: str | Path, line: int | None, field: str, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: field {field!r}: {message}")
        self.path, self.line, self.field, self.message = str(path), line, field, message


def jsonl_lines(path: Path):
    """``(line number, text or DataFormatError)`` for each non-blank line of a UTF-8 text file.
    A line that is not valid UTF-8 comes as an error naming its line and byte (so a loader can
    skip it and go on); a file without any non-blank line is an error naming the file."""
    seen = False
    with Path(path).open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                seen = True
                yield lineno, DataFormatError(path, lineno, "<encoding>", f"invalid UTF-8 at byte {exc.start} of the line")
                continue
            if line.strip():
                seen = True
                yield lineno, line
    if not seen:
        raise DataFormatError(path, None, "<file>", "empty: no record in this file")
