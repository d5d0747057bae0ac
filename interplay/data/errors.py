"""Errors of malformed source data: they name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A record of a source file is malformed."""

    def __init__(self, path: str | Path, line: int | None, field: str, message: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: field {field!r}: {message}")
        self.path, self.line, self.field, self.message = str(path), line, field, message
