"""Where the MatchScore encoder lives when no folder is given."""

from __future__ import annotations

from pathlib import Path


def matchscore_dir(path: str | None) -> Path:
    """The MatchScore encoder folder: ``path``, else the default one ``interplay matchscore train`` writes."""
    from interplay.backends.default_model import cache_dir

    return Path(path) if path else cache_dir() / "matchscore"
