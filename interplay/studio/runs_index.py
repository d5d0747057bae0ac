"""The runs a studio serves: run and evaluation folders found under the folders it was given.

A folder counts when it holds what a run or an evaluation writes: ``episodes.jsonl`` (a simulation,
a talk run, an evaluation's replays), ``summary.json``, ``metrics.json`` or ``scorecard.json``.
Each gets a short stable id (its path relative to the root it was found under); the app serves
files only through this index, so nothing outside the served folders can be read.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from interplay.episode_log import EPISODES_FILE, SUMMARY_FILE, EpisodeLog, read_episodes

MARKS = (EPISODES_FILE, SUMMARY_FILE, "metrics.json", "scorecard.json")
#: files a run page may show or offer for download (nothing else in a folder is served)
SERVED_SUFFIXES = {".png": "image/png", ".json": "application/json", ".csv": "text/csv",
                   ".md": "text/markdown", ".jsonl": "application/x-ndjson"}
MAX_DEPTH = 4


@dataclass
class RunEntry:
    """One served folder."""

    run_id: str
    path: Path
    kind: str  # simulation, talk, evaluation, fidelity
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def has_episodes(self) -> bool:
        return (self.path / EPISODES_FILE).is_file()

    def files(self) -> list[str]:
        """Names of the files of this folder the app may serve (plots first): regular files only,
        never a symbolic link (which could point anywhere)."""
        names = [p.name for p in self.path.iterdir()
                 if p.suffix in SERVED_SUFFIXES and not p.is_symlink() and p.is_file()]
        return sorted(names, key=lambda n: (not n.endswith(".png"), n))

    def file(self, name: str) -> Path | None:
        """The file ``name`` of this folder if it may be served; never a path outside it."""
        if name not in self.files():
            return None
        return self.path / name

    def text(self, name: str, limit: int = 200_000) -> str | None:
        """A served text file of this folder (a scorecard), at most ``limit`` characters."""
        path = self.file(name)
        return path.read_text(encoding="utf-8", errors="replace")[:limit] if path is not None else None

    def episodes(self) -> list[EpisodeLog]:
        """The folder's episodes (a half-written last line of a running job is skipped)."""
        if not self.has_episodes:
            return []
        return list(read_episodes(self.path / EPISODES_FILE, allow_partial_tail=True))

    def data(self) -> str | None:
        """The data its agents ran on (``demo``, a data folder), from its config."""
        value = self.config.get("data")
        return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _kind(folder: Path, config: dict) -> str:
    if (folder / "scorecard.json").is_file():
        return "fidelity"
    if config.get("kind") == "talk":
        return "talk"
    if (folder / "metrics.json").is_file() or config.get("kind") in ("user", "recommender"):
        return "evaluation"
    if not config:  # an evaluation's replays, or a log copied without its config
        return "episodes"
    return "simulation"


def _slug(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    name = root.name + ("/" + rel if rel != "." else "")
    return re.sub(r"[^A-Za-z0-9._/-]+", "-", name)


class RunsIndex:
    """The served folders, rescanned on :meth:`refresh` (new runs, e.g. a finished talk, appear)."""

    def __init__(self, roots: list[str | Path]):
        self.roots = [Path(r).resolve() for r in roots]
        self._lock = threading.Lock()
        self._entries: dict[str, RunEntry] = {}
        self.refresh()

    def refresh(self) -> list[RunEntry]:
        found: dict[str, RunEntry] = {}
        seen: set[Path] = set()
        for root in self.roots:
            if not root.is_dir():
                continue
            for folder in self._walk(root, 0):
                if folder in seen:  # under two roots (the talk folder inside a served one)
                    continue
                seen.add(folder)
                config = _read_json(folder / "config.json")
                summary = _read_json(folder / SUMMARY_FILE) or _read_json(folder / "metrics.json")
                run_id = _slug(root, folder)
                while run_id in found:  # two roots with the same name
                    run_id += "~"
                found[run_id] = RunEntry(run_id, folder, _kind(folder, config), config, summary)
        with self._lock:
            self._entries = found
        return self.entries()

    def _walk(self, folder: Path, depth: int):
        if any((folder / m).is_file() for m in MARKS):
            yield folder
        if depth >= MAX_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                              and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            yield from self._walk(child, depth + 1)

    def entries(self) -> list[RunEntry]:
        with self._lock:
            return list(self._entries.values())

    def get(self, run_id: str) -> RunEntry | None:
        with self._lock:
            entry = self._entries.get(run_id)
        if entry is None:  # created since the last scan (a talk run)
            self.refresh()
            with self._lock:
                entry = self._entries.get(run_id)
        return entry


def episode_row(ep: EpisodeLog) -> dict:
    """What the episode list shows of one episode."""
    return {"episode_id": ep.episode_id, "record_id": ep.record_id, "termination": ep.termination.value,
            "failure": ep.failure.value if ep.failure else None, "turns": ep.num_turns,
            "accepted_item": ep.accepted_item, "target": ep.target.title,
            "user": ep.user_spec, "recommender": ep.recommender_spec}


def filter_episodes(episodes: list[EpisodeLog], termination: str = "", accepted: str = "",
                    min_turns: int | None = None, max_turns: int | None = None, query: str = "") -> list[EpisodeLog]:
    """Episodes matching every filter given: termination (exact), accepted item (substring),
    turn bounds, and a text query over the record id, target and turns' text."""
    q, acc = query.strip().lower(), accepted.strip().lower()
    out = []
    for ep in episodes:
        if termination and ep.termination.value != termination:
            continue
        if acc and acc not in (ep.accepted_item or "").lower():
            continue
        if min_turns is not None and ep.num_turns < min_turns:
            continue
        if max_turns is not None and ep.num_turns > max_turns:
            continue
        if q:
            hay = " ".join([ep.episode_id, ep.record_id, ep.target.title] + [t.text or "" for t in ep.turns]).lower()
            if q not in hay:
                continue
        out.append(ep)
    return out
