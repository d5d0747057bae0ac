"""The episode log: one JSON object per finished episode in ``RUN_DIR/episodes.jsonl``.

This is the one schema the metrics read. Episodes are appended (and flushed to disk) as soon as
they end, so an interrupted run loses nothing it finished and ``--resume`` can skip them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, model_validator

from interplay.episode import Persona, Target
from interplay.protocol import Action, Role
from interplay.run_folder import JsonlLog

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"


class Termination(str, enum.Enum):
    """Why an episode ended."""

    ACCEPTED = "accepted"
    MAX_TURNS = "max_turns"
    PROTOCOL_ERROR = "protocol_error"
    AGENT_ERROR = "agent_error"


class Outcome(str, enum.Enum):
    """How an episode ended, in the three kinds a driver of the episode core tells apart."""

    TERMINATED = "terminated"  # the user accepted
    TRUNCATED = "truncated"  # the turn cap
    FAILED = "failed"  # see FailureKind


class FailureKind(str, enum.Enum):
    """Whose fault a failed episode is: re-running helps only for ``infrastructure``."""

    PROTOCOL = "protocol"  # the agent's output broke the protocol after its retries
    AGENT = "agent"  # the agent raised (a bug, a bad spec, a view that would leak the target)
    INFRASTRUCTURE = "infrastructure"  # a dead actor, a server down or timing out


_OUTCOME = {Termination.ACCEPTED: Outcome.TERMINATED, Termination.MAX_TURNS: Outcome.TRUNCATED,
            Termination.PROTOCOL_ERROR: Outcome.FAILED, Termination.AGENT_ERROR: Outcome.FAILED}


class FailedAttempt(BaseModel):
    """An output the environment rejected before retrying the agent."""

    model_config = ConfigDict(extra="forbid")
    raw: str | None
    error: str


class TurnLog(BaseModel):
    """One turn as logged. ``action``/``text`` are ``None`` when the turn never parsed."""

    model_config = ConfigDict(extra="forbid")
    index: int
    role: Role
    action: Action | None
    text: str | None
    titles: list[str] = Field(default_factory=list)
    #: the item each title names (None: not resolved), resolved when the turn was logged
    item_ids: list[str | None] = Field(default_factory=list)
    raw: str | None = None
    parse_error: str | None = None
    latency_s: float = 0.0
    failed_attempts: list[FailedAttempt] = Field(default_factory=list)
    meta: dict = Field(default_factory=dict)


class EpisodeLog(BaseModel):
    """One finished episode."""

    model_config = ConfigDict(extra="forbid")
    episode_id: str
    record_id: str
    source: str
    seed: int
    user_spec: str
    recommender_spec: str
    persona: Persona
    target: Target
    turns: list[TurnLog]
    termination: Termination
    #: for a failed episode, whose fault (None in logs written before the kinds were recorded)
    failure: FailureKind | None = None
    #: whose failure it was (None: none, or not an agent's: the view would leak the target)
    failed_role: Role | None = None
    num_turns: int
    accepted_item: str | None = None
    #: the accepted item's id (what SR / ET compare with ``target.item_id``)
    accepted_item_id: str | None = None
    recommended_items: list[str] = Field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data):
        if isinstance(data, dict) and "outcome" in data:  # written for readers of the JSON, derived
            data = {k: v for k, v in data.items() if k != "outcome"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def outcome(self) -> Outcome:
        """terminated (accepted), truncated (turn cap) or failed (see ``failure``)."""
        return _OUTCOME[self.termination]

    @property
    def rerunnable(self) -> bool:
        """Whether ``--resume`` runs this episode again by default: an infrastructure failure
        (or an ``agent_error`` from a log that did not record the kind)."""
        return self.termination is Termination.AGENT_ERROR and self.failure in (None, FailureKind.INFRASTRUCTURE)


class EpisodeLogError(ValueError):
    """A line of an episode log is not a valid episode."""


def read_episodes(path: str | Path, allow_partial_tail: bool = False) -> Iterator[EpisodeLog]:
    """Episodes of a log file, validated. Errors name the file and the line.

    With ``allow_partial_tail`` a last line without a newline (a run killed while writing) is
    skipped instead of raising.
    """
    path = Path(path)
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield EpisodeLog.model_validate_json(line)
        except ValidationError as exc:
            if allow_partial_tail and lineno - 1 == last:
                return
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "<line>"
            raise EpisodeLogError(f"{path}:{lineno}: field {field!r}: {err['msg']}") from None


def latest_episodes(path: str | Path) -> list[EpisodeLog]:
    """The episodes of a log, the latest line winning when a resumed run re-ran an episode."""
    latest: dict[str, EpisodeLog] = {}
    for ep in read_episodes(path):
        latest.pop(ep.episode_id, None)
        latest[ep.episode_id] = ep
    return list(latest.values())


class EpisodeLogWriter(JsonlLog):
    """Appends episodes to ``RUN_DIR/episodes.jsonl``, one fsync'd line each.

    On open it drops a partial last line left by a killed run (an unfinished episode, which is
    then run again), so the file always holds whole episodes only.
    """

    def __init__(self, run_dir: str | Path):
        super().__init__(Path(run_dir) / EPISODES_FILE)

    def existing_ids(self, rerun_failed: bool = False) -> set[str]:
        """Ids a resumed run skips: episodes in the log whose latest line is not an infrastructure
        failure (a dead actor, a server down: :attr:`EpisodeLog.rerunnable`), nor, with
        ``rerun_failed``, any failure. Those are run again, appended, and the newer line
        supersedes the older one for every reader of :func:`latest_episodes`."""
        if not self.path.exists():
            return set()
        return {ep.episode_id for ep in latest_episodes(self.path)
                if not (ep.rerunnable or (rerun_failed and ep.outcome is Outcome.FAILED))}

    def write(self, episode: EpisodeLog) -> None:
        self.append(episode.model_dump_json())


def summarize(episodes: list[EpisodeLog]) -> dict:
    """Counts per termination reason, mean turns, the share of generation attempts that gave a turn
    (``parsed_turn_rate``), split into protocol-clean ones and ones read by the fallback parser."""
    counts = {t.value: 0 for t in Termination}
    for ep in episodes:
        counts[ep.termination.value] += 1
    n_turns = sum(ep.num_turns for ep in episodes)
    parsed = sum(1 for ep in episodes for t in ep.turns if t.action is not None)
    attempts = sum(1 + len(t.failed_attempts) for ep in episodes for t in ep.turns)
    fallback = sum(1 for ep in episodes for t in ep.turns if t.action is not None and t.meta.get("fallback"))
    return {
        "episodes": len(episodes),
        "termination": counts,
        # the same episodes as the episode core tells them apart, and whose fault the failed ones are
        "outcome": {o.value: sum(ep.outcome is o for ep in episodes) for o in Outcome},
        "failure": {k.value: sum(ep.failure is k for ep in episodes) for k in FailureKind},
        "mean_turns": n_turns / len(episodes) if episodes else 0.0,
        "total_turns": n_turns,
        "parsed_turn_rate": parsed / attempts if attempts else 0.0,
        # attempts that followed the protocol as written / that were read by the fallback rules
        "protocol_clean_rate": (parsed - fallback) / attempts if attempts else 0.0,
        "fallback_rate": fallback / attempts if attempts else 0.0,
        # how the parsed turns were decoded: constrained / free / parse-after (a backend that could
        # not apply the turn grammar); turns of agents without a model have no such note
        "decoding": _count(t.meta.get("decoding") for ep in episodes for t in ep.turns
                           if t.action is not None and t.meta.get("decoding")),
    }


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
