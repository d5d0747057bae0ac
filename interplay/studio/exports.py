"""A study's exports as the studio serves them: written once per study state (a judgement stored
or revised, the study closed), held in memory, the temporary folder removed at once."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from interplay.studio.study import Study
from interplay.studio.study_stats import write_results

#: the exports a study page offers
EXPORTS = ("results.json", "results.csv", "judgements.csv", "verdicts.csv", "results.png")


class ExportCache:
    """The latest exports of each study, keyed by :meth:`Study.state_key`: viewing a results page
    again writes nothing, and nothing is left on disk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._files: dict[str, tuple[tuple, dict[str, bytes]]] = {}
        self.writes = 0  # how many times the files were written (for tests)

    def get(self, sid: str, study: Study, name: str) -> bytes:
        """The bytes of export ``name`` (one of :data:`EXPORTS`) of study ``sid`` now."""
        if name not in EXPORTS:
            raise KeyError(name)
        with self._lock:
            lock = self._locks.setdefault(sid, threading.Lock())
        with lock:
            key = study.state_key()
            held = self._files.get(sid)
            if held is None or held[0] != key:
                with tempfile.TemporaryDirectory(prefix="interplay-study-") as folder:
                    paths = write_results(study, folder)
                    files = {n: Path(paths[n]).read_bytes() for n in EXPORTS}
                self.writes += 1
                self._files[sid] = held = (key, files)
            return held[1][name]
