"""Agents for tests, importable by Ray workers through `py:recording_agents:...` specs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agents.rule_based import RuleBasedUser


class RecordingUser(RuleBasedUser):
    """A rule-based user that writes everything it receives to $INTERPLAY_RECORD_DIR."""

    def _record(self, kind: str, payload: str) -> None:
        out = Path(os.environ["INTERPLAY_RECORD_DIR"]) / f"{self.view.episode_id}.jsonl"
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "payload": payload}) + "\n")

    def reset(self, view):
        super().reset(view)
        self._record("view", view.model_dump_json())

    def act(self, observation):
        self._record("observation", observation.model_dump_json())
        return super().act(observation)
