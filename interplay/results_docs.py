"""Figures as data: every table of figures in ``docs/`` is rendered from a small committed result
file ``docs/results/NAME.json`` (:class:`ResultTable`). In a markdown doc the rendered table lives
between ``<!-- results: NAME -->`` and ``<!-- /results -->``; :func:`render_docs` rewrites those
blocks from their files, or (``check=True``) lists the blocks whose text no longer matches."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: where result files live, as named in a rendered table's source line
RESULTS_DIR = "docs/results"
#: keys every row carries, so every table states the checkpoint and the threshold behind its figures
ROW_KEYS = ("checkpoint", "threshold")
START = re.compile(r"^<!--\s*results:\s*([A-Za-z0-9_.-]+)\s*-->\s*$")
END = re.compile(r"^<!--\s*/results\s*-->\s*$")
CHECKPOINT = re.compile(r"^(sha256:[0-9a-f]{16,64}|-)$")
#: how a checkpoint hash of ``null`` renders: the run's weights were not kept, so their hash is unknown
NOT_KEPT = "not kept"


class ResultsError(ValueError):
    """A result file or a marker block that cannot be rendered; the message names file and line or field."""


class Figure(BaseModel):
    """A figure with its 95% interval and sample size, rendered ``0.74 [0.67, 0.80]``."""

    model_config = ConfigDict(extra="forbid")
    value: float
    ci95: Optional[tuple[float, float]] = None
    n: Optional[int] = Field(None, ge=0)

    @field_validator("ci95")
    @classmethod
    def _ordered(cls, v: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"interval bounds out of order: {list(v)}")
        return v


Cell = Union[Figure, int, float, str, None]


class Column(BaseModel):
    """One column: the row key it shows, its header, and a format spec (``.2f``, ``.3f``, ``d``, ``s``)
    applied to numbers and to a figure's value and bounds; ``show_n`` appends a figure's ``(n)``."""

    model_config = ConfigDict(extra="forbid")
    key: str
    header: str
    format: str = "s"
    show_n: bool = False

    @field_validator("format")
    @classmethod
    def _valid_format(cls, v: str) -> str:
        if v != "s":
            try:
                format(0, v)
            except ValueError:
                raise ValueError(f"not a number format: {v!r}") from None
        return v


class ResultTable(BaseModel):
    """One docs table as data: what was measured, by which command, and the rows of figures."""

    model_config = ConfigDict(extra="forbid")
    title: str
    command: str = Field(min_length=1, description="the exact command that produced the numbers")
    data: str = Field(description="the data folder")
    split: str
    source: str = Field(description="the run folder's metrics/scorecard the numbers were read from (relative)")
    measured: dt.date
    columns: list[Column] = Field(min_length=1)
    rows: list[dict[str, Cell]]
    notes: list[str] = []

    @field_validator("rows")
    @classmethod
    def _rows_state_checkpoint_and_threshold(cls, rows: list[dict[str, Cell]]) -> list[dict[str, Cell]]:
        for i, row in enumerate(rows):
            for key in ROW_KEYS:
                if key not in row:
                    raise ValueError(f"rows.{i}.{key}: missing (every row states its checkpoint hash, or '-', "
                                     "and its threshold, or null)")
            ckpt, thr = row["checkpoint"], row["threshold"]
            if ckpt is not None and not (isinstance(ckpt, str) and CHECKPOINT.match(ckpt)):
                raise ValueError(f"rows.{i}.checkpoint: {ckpt!r} is neither 'sha256:<hex>' nor '-'")
            if thr is not None and (isinstance(thr, (str, Figure))):
                raise ValueError(f"rows.{i}.threshold: {thr!r} is not a number or null")
        return rows

    @model_validator(mode="after")
    def _cells_render(self) -> ResultTable:
        for i, row in enumerate(self.rows):
            for col in self.columns:
                if col.key not in row:
                    raise ValueError(f"rows.{i}.{col.key}: missing (column {col.header!r})")
                try:
                    format_cell(row[col.key], col)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"rows.{i}.{col.key}: cannot render with format {col.format!r}: {exc}") from None
        return self


def _number(x: float, fmt: str) -> str:
    if fmt == "s":
        return str(x)
    if fmt.endswith("d") and isinstance(x, float) and x.is_integer():
        x = int(x)
    return format(x, fmt)


def format_cell(cell: Cell, column: Column) -> str:
    """A cell as table text: ``-`` for null, strings as they are, numbers and figures in the column's format."""
    if cell is None:
        text = "-"
    elif isinstance(cell, str):
        text = cell
    elif isinstance(cell, Figure):
        text = _number(cell.value, column.format)
        if cell.ci95 is not None:
            text += f" [{_number(cell.ci95[0], column.format)}, {_number(cell.ci95[1], column.format)}]"
        if column.show_n and cell.n is not None:
            text += f" ({cell.n})"
    else:
        text = _number(cell, column.format)
    return text.replace("|", "\\|").replace("\n", " ")


def table_columns(result: ResultTable) -> list[Column]:
    """The columns shown: the file's own, then ``checkpoint`` and ``threshold`` where it does not show them."""
    keys = {c.key for c in result.columns}
    extra = [Column(key="checkpoint", header="checkpoint"), Column(key="threshold", header="threshold")]
    return [*result.columns, *(c for c in extra if c.key not in keys)]


def render_table(result: ResultTable, name: str) -> str:
    """The markdown of result file ``name`` (its stem): the table, its source line, its notes as bullets."""
    cols = table_columns(result)
    lines = ["| " + " | ".join(c.header for c in cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(NOT_KEPT if c.key == "checkpoint" and row.get(c.key) is None
                                else format_cell(row.get(c.key), c) for c in cols) + " |" for row in result.rows]
    lines += ["", f"Source: `{RESULTS_DIR}/{name}.json` — command: `{result.command}`, measured "
              f"{result.measured.isoformat()}"]
    if result.notes:
        lines += ["", *(f"- {note}" for note in result.notes)]
    return "\n".join(lines) + "\n"


def load_result(path: Path) -> ResultTable:
    """Read and validate one result file; a bad one raises :class:`ResultsError` naming file and field."""
    try:
        return ResultTable.model_validate_json(Path(path).read_bytes())
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<file>'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())
        raise ResultsError(f"{path}: {fields}") from None


@dataclass(frozen=True)
class Block:
    """A marker block in a doc: the doc, the 1-based line of its start marker, the result file's stem."""

    doc: Path
    line: int
    name: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} ({self.name})"


def find_blocks(doc: Path) -> list[tuple[Block, int, int]]:
    """The marker blocks of ``doc`` as (block, first content line index, end marker line index),
    ignoring markers inside fenced code; unbalanced markers raise :class:`ResultsError`."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[tuple[Block, int, int]] = []
    open_: Optional[Block] = None
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced:
            continue
        if (m := START.match(line.strip())) is not None:
            if open_ is not None:
                raise ResultsError(f"{doc}:{i + 1}: results block opened inside the block opened at line {open_.line}")
            open_ = Block(doc, i + 1, m.group(1))
        elif END.match(line.strip()):
            if open_ is None:
                raise ResultsError(f"{doc}:{i + 1}: '<!-- /results -->' without an opening '<!-- results: NAME -->'")
            found.append((open_, open_.line, i))
            open_ = None
    if open_ is not None:
        raise ResultsError(f"{doc}:{open_.line}: results block '{open_.name}' is never closed by '<!-- /results -->'")
    return found


def render_docs(docs_dir: Path, results_dir: Path, check: bool = False, readme: Optional[Path] = None) -> list[Block]:
    """Re-render every marker block of ``docs_dir/*.md`` (and ``readme``) from ``results_dir/NAME.json``.
    Returns the blocks whose text differed from their file's rendering; with ``check=False`` those
    docs are rewritten, with ``check=True`` nothing is written. Every result file is validated, even
    one no doc shows; a bad file or a marker naming a missing file raises :class:`ResultsError`."""
    docs_dir, results_dir = Path(docs_dir), Path(results_dir)
    results = {p.stem: load_result(p) for p in sorted(results_dir.glob("*.json"))}
    docs = sorted(docs_dir.glob("*.md")) + ([Path(readme)] if readme is not None else [])
    stale: list[Block] = []
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        out, pos, changed = [], 0, False
        for block, start, end in find_blocks(doc):
            if block.name not in results:
                raise ResultsError(f"{doc}:{block.line}: no result file {results_dir / (block.name + '.json')}")
            body = render_table(results[block.name], block.name)
            if "".join(lines[start:end]) != body:
                stale.append(block)
                changed = True
            out += lines[pos:start] + [body]
            pos = end
        if changed and not check:
            doc.write_text("".join(out + lines[pos:]), encoding="utf-8")
    return stale


#: files of a checkpoint that are its model: weights, config, tokenizer
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".json", ".model", ".txt", ".tiktoken"}
#: files of a checkpoint folder that are training state or reports, not the model
NOT_MODEL = re.compile(r"^(trainer_state\.json|training_args\.bin|optimizer\.pt|scheduler\.pt|scaler\.pt|"
                       r"rng_state.*\.pth|interplay_training\.json|train_report\.json|metrics\.json)$")


def checkpoint_files(folder: Path) -> list[Path]:
    """The model files of a checkpoint folder (weights, config, tokenizer), sorted by relative path;
    hidden files, trainer ``checkpoint-*`` subfolders and training state are left out."""
    folder = Path(folder)
    files = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if (not p.is_file() or any(part.startswith(".") or part.startswith("checkpoint-") for part in rel.parts[:-1])
                or rel.name.startswith(".") or p.suffix not in WEIGHT_SUFFIXES or NOT_MODEL.match(rel.name)):
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def checkpoint_hash(folder: Path) -> str:
    """A content hash of a checkpoint folder, ``sha256:`` + 16 hex digits: sha256 over each model
    file's relative path and bytes (streamed), in sorted order."""
    folder = Path(folder)
    files = checkpoint_files(folder)
    if not files:
        raise ResultsError(f"{folder}: no model files (weights, config, tokenizer) to hash")
    h = hashlib.sha256()
    for p in files:
        rel = p.relative_to(folder).as_posix().encode()
        h.update(len(rel).to_bytes(8, "big") + rel + p.stat().st_size.to_bytes(8, "big"))
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]
