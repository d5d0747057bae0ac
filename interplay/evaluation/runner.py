"""Running evaluation tasks on Ray: the agent under test lives in an AgentHost actor (its model in
a shared, batching ModelServer); many tasks are in flight at once. Results stream to JSONL files,
so a killed evaluation resumes where it stopped."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict

from environments.recommendation_env import LocalAgentHandle, RecommendationEnv
from interplay.evaluation.tasks import ReplayTask, TurnTask
from interplay.episode_log import EpisodeLog, EpisodeLogWriter
from interplay.protocol import ProtocolError
from interplay.run_folder import JsonlLog
from interplay.runtime.env_settings import env_config

_TAG = re.compile(r"</?[a-z_-]+>")


def plain_text(raw: str) -> str:
    """A raw model output with protocol tags removed (to score replies that did not parse)."""
    return " ".join(_TAG.sub(" ", raw).split())


class TurnRow(TypedDict, total=False):
    """One result line of a single-turn task (``single_turn.jsonl``, ``human_view.jsonl``,
    ``recommendations.jsonl``): the task's head, then the agent's answer or decision. A task's
    ``extra`` fields (e.g. ``human_decision``, ``gold_titles``) join the head."""

    task_id: str
    record_id: str
    role: str
    reference: str | None
    reference_action: str | None
    target: str | None
    parsed: bool
    action: str | None
    text: str
    titles: list[str]
    raw: str
    error: str
    fallback: Any
    ranked_items: list[str]
    decoding: str | None
    #: decisions read by scoring (``decide``): P(accept), P of every legal action, and how
    p_accept: float
    action_probabilities: dict[str, float]
    decision_method: str
    scoring_error: str


class ResultLog(JsonlLog):
    """Append-only JSONL of per-task results (one fsync'd line each); a partial last line is
    dropped on open, and the ids already there are skipped by a resumed run."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self.rows: dict[str, TurnRow] = {}
        for lineno, line in self.lines():
            try:
                row = json.loads(line)
                self.rows[row["task_id"]] = row
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(f"{self.path}:{lineno}: task_id: not a result line ({exc})") from None

    def write(self, row: TurnRow) -> None:
        self.rows[row["task_id"]] = row
        self.append(json.dumps(row))


def _row_head(task: TurnTask) -> TurnRow:
    """The fields every result row of a task starts with."""
    return TurnRow(task_id=task.task_id, record_id=task.record_id, role=task.role.value,  # type: ignore[typeddict-item]
                   reference=task.reference, reference_action=task.reference_action, target=task.target,
                   **task.extra)


@asynccontextmanager
async def _task_agent(host, task: TurnTask, seed: int) -> AsyncIterator:
    """A fresh agent for one task in the host, reset to the task's view; closed afterwards
    (a failing close is ignored: the task's result is what counts)."""
    from interplay.runtime.agent_host import RayAgentHandle

    handle = RayAgentHandle(host, task.task_id, seed)
    try:
        await handle.reset(task.view)
        yield handle
    except asyncio.CancelledError:
        raise  # stopping (Ctrl-C): no close round trip to a busy host; the host goes down with the run
    except BaseException:
        await _close_quietly(handle)
        raise
    else:
        await _close_quietly(handle)


async def _close_quietly(handle) -> None:
    try:
        await handle.close()
    except Exception:
        pass


async def answer(host, task: TurnTask, seed: int) -> TurnRow:
    """The agent's turn for one single-turn task, as a result row (never raises)."""
    row = _row_head(task)
    try:
        async with _task_agent(host, task, seed) as handle:
            turn = await handle.act(task.observation)
        row.update(parsed=True, action=turn.action.value, text=turn.text, titles=turn.titles, raw=turn.raw,
                   fallback=turn.meta.get("fallback"), ranked_items=list(turn.meta.get("ranked_items", [])),
                   decoding=turn.meta.get("decoding"))
    except ProtocolError as exc:
        raw = exc.raw or ""
        row.update(parsed=False, action=None, text=plain_text(raw), titles=[], raw=raw, error=str(exc),
                   ranked_items=[])
    except Exception as exc:  # an agent failure is a result too; the evaluation goes on
        row.update(parsed=False, action=None, text="", titles=[], raw="", error=f"agent error: {exc}",
                   ranked_items=[])
    return row


async def decide(host, task: TurnTask, seed: int, accept_threshold: float) -> TurnRow:
    """The agent's decision for one task read without generating: P(action) over the legal
    actions; ``accept`` when P(accept) >= ``accept_threshold``, else the likeliest other action.
    An agent that cannot score is asked to generate (:func:`answer`); the row says which."""
    try:
        async with _task_agent(host, task, seed) as handle:
            probs = await handle.action_probabilities(task.observation)
    except Exception as exc:
        probs, error = None, f"agent error: {exc}"
    else:
        error = None
    if probs is None:
        row = await answer(host, task, seed)
        row["decision_method"] = "generate"
        if error:
            row["scoring_error"] = error
        return row
    from interplay.decision_calibration import thresholded_action

    p_accept = probs.get("accept", 0.0)
    action = thresholded_action(probs, accept_threshold)
    return TurnRow(**_row_head(task), parsed=True, action=action, text="", titles=[], raw="",  # type: ignore[typeddict-item]
                   p_accept=p_accept, action_probabilities=probs, decision_method="score")


async def likelihood(host, task: TurnTask, seed: int) -> TurnRow:
    """The agent's log-likelihood of the task's recorded reply (``reference`` with
    ``reference_action``) after the gold history, and its token count; ``nll`` None when the
    agent cannot score."""
    from interplay.protocol import Action, Turn

    row = _row_head(task)
    try:
        async with _task_agent(host, task, seed) as handle:
            got = await handle.turn_likelihood(task.observation, Turn(Action(task.reference_action), task.reference or ""))
        row.update(parsed=True, logprob=None if got is None else got[0], tokens=None if got is None else got[1])
    except Exception as exc:  # a failure is a result too
        row.update(parsed=False, logprob=None, tokens=None, error=f"agent error: {exc}")
    return row


async def run_turn_tasks(host, tasks: list[TurnTask], log: ResultLog, concurrency: int, seed: int,
                         on_done: Callable[[TurnRow], None], accept_threshold: float | None = None,
                         score_reference: bool = False) -> None:
    """Answer every task not yet in ``log``; with ``accept_threshold``, by :func:`decide`
    (decisions scored, not generated); with ``score_reference``, by :func:`likelihood` (the
    recorded reply's log-likelihood)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, task: TurnTask) -> None:
        async with sem:
            if score_reference:
                row = await likelihood(host, task, seed + i)
            elif accept_threshold is None:
                row = await answer(host, task, seed + i)
            else:
                row = await decide(host, task, seed + i, accept_threshold)
            log.write(row)
            on_done(row)

    await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks) if t.task_id not in log.rows))


async def run_replays(host, tasks: list[ReplayTask], writer: EpisodeLogWriter, done: set[str], agent_spec: str,
                      max_retries: int, concurrency: int, seed: int, on_done: Callable[[EpisodeLog], None],
                      grounding=None, catalogue=None) -> None:
    """Each task in a :class:`RecommendationEnv`: the user from ``host``, the replay recommender here."""
    from agents.replay import ReplayRecommender
    from interplay.runtime.agent_host import RayAgentHandle

    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, task: ReplayTask) -> None:
        async with sem:
            user = RayAgentHandle(host, task.episode_id, seed + i)
            rec = LocalAgentHandle(ReplayRecommender(task.script))
            env = RecommendationEnv(user, rec,
                                    env_config(max_turns=task.max_turns, first_speaker=task.first_speaker,
                                               max_retries=max_retries, catalogue=catalogue,
                                               grounded=grounding is not None))
            episode = await env.run(task.episode_id, task.spec, seed + i, agent_spec, "replay")
            writer.write(episode)
            on_done(episode)
            try:
                await user.close()
            except Exception:
                pass

    await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks) if t.episode_id not in done))
