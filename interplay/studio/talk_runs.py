"""Run folders of talk episodes: a folder holds talks of one setting (role, agent, data, turn
cap); each finished episode is appended to its log and ``summary.json`` is rewritten in the
simulation's format. Writes to one folder go through one lock (safe across threads)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from interplay.episode_log import (
    EPISODES_FILE,
    SUMMARY_FILE,
    EpisodeLog,
    EpisodeLogWriter,
    latest_episodes,
    summarize,
)
from interplay.protocol import Role
from interplay.run_folder import CONFIG_FILE, write_json_atomic

__all__ = ["append_episode", "claim_folder", "talk_run_dir"]

_FOLDER_LOCKS: dict[Path, threading.Lock] = {}
_FOLDERS_LOCK = threading.Lock()


def _folder_lock(run_dir: Path) -> threading.Lock:
    with _FOLDERS_LOCK:
        return _FOLDER_LOCKS.setdefault(run_dir.resolve(), threading.Lock())


def claim_folder(run_dir: Path, config: dict) -> None:
    """Make ``run_dir`` a talk run of ``config``: write ``config.json`` if the folder holds no run
    yet; accept it if it holds talks of the same settings; ValueError otherwise."""
    with _folder_lock(run_dir):
        path = run_dir / CONFIG_FILE
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                raise ValueError(f"{path}: not valid JSON; choose another run folder") from None
            if not isinstance(old, dict) or old.get("kind") != "talk":
                raise ValueError(f"{run_dir} holds another kind of run; choose another run folder for talks")
            differ = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if differ:
                raise ValueError(f"{run_dir} holds talks with other settings ({', '.join(differ)} differ); "
                                 "choose another run folder")
            return
        episodes = run_dir / EPISODES_FILE
        if (episodes.is_file() and episodes.stat().st_size > 0) or (run_dir / SUMMARY_FILE).is_file():
            raise ValueError(f"{run_dir} holds a run without a config.json; choose another run folder for talks")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, config)


def append_episode(run_dir: Path, episode: EpisodeLog, left_out: int) -> dict:
    """Append a finished episode to the folder's log and rewrite ``summary.json`` (the
    simulation's format: :func:`~interplay.episode_log.summarize` plus the run figures)."""
    from interplay.runtime.model_server import peak_rss_mb

    with _folder_lock(run_dir):
        with EpisodeLogWriter(run_dir) as writer:
            writer.write(episode)
        everything = latest_episodes(run_dir / EPISODES_FILE)
        summary = summarize(everything)
        summary.update(
            planned=len(everything),  # a talk run has no plan: every finished talk counts
            episodes_this_invocation=1,
            wall_s=round(episode.wall_s, 3),
            turns_per_s=episode.num_turns / episode.wall_s if episode.wall_s > 0 else 0.0,
            model_servers={},
            peak_rss_mb={"driver": peak_rss_mb()},
            records_left_out=left_out,
            placement={},
        )
        write_json_atomic(run_dir / SUMMARY_FILE, summary)
        return summary


def talk_run_dir(root: str | Path, human_role: Role | str, agent_spec: str, data: str = "demo",
                 max_turns: int = 10) -> Path:
    """The folder under ``root`` for talks of one setting (``user-vs-rule-demo-10t``): a run folder
    holds talks of one setting only (role, agent, data, turn cap: :meth:`TalkSession.start` refuses
    others), so a page that lets people choose them can file each choice in its own run."""
    role = Role(human_role).value
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{role}-vs-{agent_spec}-{Path(data).name or data}").strip("-.")
    return Path(root) / f"{slug[:100]}-{max_turns}t"
