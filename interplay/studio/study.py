"""A head-to-head human study stored in one SQLite file.

Judges compare two dialogues built from the same user profile (record id): one of system A (a run
folder), one of system B (another run folder, or a data set's recorded human dialogues), on the
six :data:`CRITERIA`, and pick the better one (or a tie, when the study allows it). Which system
is shown on the left is randomised per judge and pair (balanced per judge, reproducible with the
seed), and so is the order in which each judge sees the pairs. Choices are stored in system terms
(A / B / tie); one judgement per judge and pair, a resubmission replaces it.

The file is self-contained (both episode logs of every pair are stored in it) and written in WAL
mode; every call opens its own connection, so one :class:`Study` serves a multi-threaded web app.

Why this module is long: it is the whole life of one study file around one schema (building the
pairs and the judges' plans, writing the file, judging, reading back); split, the SQL and the
rules of what a judgement is would be spread over several modules. The statistics live in
:mod:`interplay.studio.study_stats`.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sqlite3
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from interplay.episode_log import (
    EPISODES_FILE,
    EpisodeLog,
    Outcome,
    Termination,
    TurnLog,
    latest_episodes,
)
from interplay.protocol import Action, Role
from interplay.studio.blinding import (
    catalogue_titles,
    in_catalogue_spelling,
    load_catalogue,
    run_data,
)

if TYPE_CHECKING:
    from interplay.studio.study_stats import StudyResults

FORMAT = "interplay-study/1"
MAX_COMMENT_CHARS = 2000
MAX_JUDGE_NAME_CHARS = 100
BUSY_TIMEOUT_MS = 30_000
Side = Literal["A", "B"]
SIDE_CHOICES = ("left", "right", "tie")


@dataclass(frozen=True)
class Criterion:
    """One question judges answer for each pair."""

    key: str
    name: str
    definition: str


CRITERIA: tuple[Criterion, ...] = (
    Criterion("user_control", "User control",
              "Which dialogue lets the user steer the conversation and have their requests followed?"),
    Criterion("expertise", "Expertise",
              "In which dialogue does the recommender show more knowledge of the items it discusses and recommends?"),
    Criterion("specificity", "Specificity of preferences",
              "In which dialogue does the user state clearer, more specific preferences?"),
    Criterion("relevance", "Relevance",
              "In which dialogue are the recommendations more relevant to what the user asked for?"),
    Criterion("flow", "Conversational flow",
              "Which dialogue reads more naturally, each turn following coherently from the one before?"),
    Criterion("consistency", "Consistency",
              "In which dialogue do both speakers stay consistent with what they said before and with the user's profile?"),
)


class StudyError(ValueError):
    """A study cannot be created or opened as asked (no pairs, not a study file, bad settings)."""


class SubmissionError(Exception):
    """A submission was refused; ``http_status`` is the code a web app answers with."""

    http_status = 400


class UnknownJudge(SubmissionError, LookupError):
    """The token is no judge's."""

    http_status = 403


class BadSubmission(SubmissionError, ValueError):
    """An unknown pair, a criterion missing or unknown, a choice not allowed."""

    http_status = 400


class TooLarge(SubmissionError, ValueError):
    """The comment is longer than :data:`MAX_COMMENT_CHARS`."""

    http_status = 413


class StudyClosed(SubmissionError):
    """The operator closed the study: no judgement is taken any more."""

    http_status = 409


@dataclass(frozen=True)
class Judge:
    """A judge: a display name and the secret token of their link (``/judge/<token>``)."""

    name: str
    token: str


@dataclass
class PairForJudge:
    """One pair as one judge sees it: ``left``/``right`` already swapped for that judge.

    The logs carry ``user_spec``/``recommender_spec``/``episode_id``: a blind study shows judges
    only the persona, the target and the turns, with every title in the catalogue's spelling
    (:mod:`interplay.studio.blinding`). ``profile``: the episode whose persona and target are
    shown (always A's, whichever side it is on). ``choices`` are in the judge's terms
    (left/right/tie); empty until ``done``."""

    pair_id: str
    position: int
    record_id: str
    left: EpisodeLog
    right: EpisodeLog
    done: bool
    choices: dict[str, str] = field(default_factory=dict)
    comment: str = ""
    profile: EpisodeLog | None = None


@dataclass(frozen=True)
class SubmitResult:
    """What a submission did: stored a new judgement or ``replaced`` the judge's earlier one."""

    pair_id: str
    replaced: bool
    judged: int
    total: int


# ------------------------------------------------------------------------------- episodes


def run_episodes(run: str | Path) -> list[EpisodeLog]:
    """The episodes of a run folder (or of an ``episodes.jsonl``), the latest line of a re-run
    episode winning. A bad line raises :class:`~interplay.episode_log.EpisodeLogError` naming the
    file, the line and the field."""
    run = Path(run)
    log = run if run.is_file() else run / EPISODES_FILE
    if not run.exists():
        raise FileNotFoundError(f"{run}: no such run folder")
    if not log.is_file():
        raise FileNotFoundError(f"{run}: no {EPISODES_FILE} here (not a run folder)")
    return latest_episodes(log)


def recorded_episodes(data_dir: str | Path, split: str | None) -> list[EpisodeLog]:
    """A data set's recorded human dialogues as episode logs (``user_spec``/``recommender_spec``
    ``"human"``), one per record with a target; records without a target are skipped. Bad records
    raise :class:`~interplay.data.errors.DataFormatError` naming the file, the line and the field."""
    from interplay.data.build import read_records

    episodes = []
    for rec in read_records(data_dir, split):
        if rec.target is None:
            continue
        turns, recommended = [], []
        for i, t in enumerate(rec.turns):
            titles = list(t.marked_titles or t.titles)
            turns.append(TurnLog(index=i, role=t.role, action=t.action, text=t.text, titles=titles,
                                 item_ids=[rec.item_id(x) for x in titles]))
            if t.role is Role.RECOMMENDER and t.action is Action.RECOMMEND:
                recommended.extend(x for x in titles if x not in recommended)
        accepted = any(t.action is Action.ACCEPT for t in rec.turns)
        episodes.append(EpisodeLog(
            episode_id=f"human-{rec.id}", record_id=rec.id, source=rec.source, seed=0, user_spec="human",
            recommender_spec="human", persona=rec.persona, target=rec.target, turns=turns,
            termination=Termination.ACCEPTED if accepted else Termination.MAX_TURNS, num_turns=len(turns),
            accepted_item=rec.outcome.accepted_item, recommended_items=recommended))
    return episodes


def pair_episodes(a: Sequence[EpisodeLog], b: Sequence[EpisodeLog]
                  ) -> tuple[list[tuple[EpisodeLog, EpisodeLog]], dict[str, int]]:
    """Pairs of episodes with the same record id, in A's order: the k-th occurrence of a record in
    A with its k-th occurrence in B. Also the counts left out: ``only_a``, ``only_b``."""
    queues: dict[str, deque[EpisodeLog]] = defaultdict(deque)
    for ep in b:
        queues[ep.record_id].append(ep)
    pairs, only_a = [], 0
    for ep in a:
        q = queues.get(ep.record_id)
        if q:
            pairs.append((ep, q.popleft()))
        else:
            only_a += 1
    return pairs, {"only_a": only_a, "only_b": sum(len(q) for q in queues.values())}


def plan_judges(n_pairs: int, n_judges: int, seed: int) -> list[list[tuple[int, Side]]]:
    """For each judge, the pairs in the order they see them, each with the system shown on the
    left: a shuffled order and sides balanced within the judge (half A, half B), from ``seed``."""
    rng = random.Random(seed)
    plan = []
    for _ in range(n_judges):
        order = list(range(n_pairs))
        rng.shuffle(order)
        sides: list[Side] = ["A", "B"] * (n_pairs // 2) + ([rng.choice(("A", "B"))] if n_pairs % 2 else [])
        rng.shuffle(sides)
        plan.append(list(zip(order, sides)))
    return plan


# ------------------------------------------------------------------------------- the file

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE pairs (
        pair_id TEXT PRIMARY KEY, idx INTEGER NOT NULL UNIQUE, record_id TEXT NOT NULL,
        episode_a TEXT NOT NULL, episode_b TEXT NOT NULL)""",
    "CREATE TABLE judges (token TEXT PRIMARY KEY, idx INTEGER NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE assignments (
        token TEXT NOT NULL REFERENCES judges(token), pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
        position INTEGER NOT NULL, left_side TEXT NOT NULL CHECK (left_side IN ('A', 'B')),
        PRIMARY KEY (token, pair_id), UNIQUE (token, position))""",
    """CREATE TABLE judgements (
        token TEXT NOT NULL, pair_id TEXT NOT NULL, choices TEXT NOT NULL, comment TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL, updated TEXT NOT NULL, revisions INTEGER NOT NULL DEFAULT 1,
        UNIQUE (token, pair_id), FOREIGN KEY (token, pair_id) REFERENCES assignments(token, pair_id))""",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    """A new connection (autocommit; transactions are explicit), WAL, waiting on a busy file."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _judge_names(judges: int | Sequence[str]) -> list[str]:
    if isinstance(judges, int):
        if judges < 1:
            raise StudyError(f"judges: at least one judge, got {judges}")
        return [f"judge-{i}" for i in range(1, judges + 1)]
    names = [str(n).strip() for n in judges]
    if not names:
        raise StudyError("judges: no judge name given")
    bad = [n for n in names if not n or len(n) > MAX_JUDGE_NAME_CHARS]
    if bad:
        raise StudyError(f"judges: a name must have 1 to {MAX_JUDGE_NAME_CHARS} characters, got {bad[0]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f"judges: names must differ, {', '.join(map(repr, dupes))} given twice")
    return names


def _labels(a: Path, b: Path | str) -> tuple[str, str]:
    """Short names of the two sides for tables and plots (two levels of the path if one is not enough)."""
    la = a.resolve().name
    lb = b if isinstance(b, str) else b.resolve().name
    if la == lb and not isinstance(b, str):
        la, lb = "/".join(a.resolve().parts[-2:]), "/".join(b.resolve().parts[-2:])
    return la, lb


def create_study(path: str | Path, run_a: str | Path, run_b: str | Path | None = None, *,
                 data: str | Path | None = None, split: str | None = None,
                 judges: int | Sequence[str] = 3, allow_tie: bool = False, seed: int = 0,
                 title: str | None = None, limit: int | None = None) -> Study:
    """Create a study of run ``run_a`` (A) against ``run_b`` or a data set's recorded dialogues
    (``data``/``split``) (B) at ``path``, which must not exist. ``judges``: a number (names
    ``judge-1``...) or the names. ``limit``: only the first pairs. Failed episodes (protocol or
    agent errors) are left out. The file is written under a temporary name and moved into place,
    so a failure leaves nothing behind."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists (a study file is never overwritten)")
    if (run_b is None) == (data is None):
        raise StudyError("side B: give a run folder or a data folder (data=, split=), exactly one")
    if limit is not None and limit < 1:
        raise StudyError(f"limit: at least 1 pair, got {limit}")
    names = _judge_names(judges)
    run_a = Path(run_a)
    eps_a = run_episodes(run_a)
    if run_b is not None:
        run_b = Path(run_b)
        if run_b.resolve() == run_a.resolve():
            raise StudyError(f"{run_a}: systems A and B are the same run")
        eps_b = run_episodes(run_b)
        side_b = str(run_b)
        name_a, name_b = _labels(run_a, run_b)
    else:
        eps_b = recorded_episodes(data, split)
        side_b = f"{data} (split {split or 'all'})"
        name_a, name_b = _labels(run_a, f"human ({Path(data).name}{'/' + split if split else ''})")
    ok_a = [e for e in eps_a if e.outcome is not Outcome.FAILED]
    ok_b = [e for e in eps_b if e.outcome is not Outcome.FAILED]
    pairs, left_out = pair_episodes(ok_a, ok_b)
    left_out.update(failed_a=len(eps_a) - len(ok_a), failed_b=len(eps_b) - len(ok_b))
    if not pairs:
        raise StudyError(f"no pair: none of the {len(ok_a)} episodes of {run_a} has a record id among the "
                         f"{len(ok_b)} episodes of {side_b}")
    available = len(pairs)
    pairs = pairs[:limit] if limit else pairs
    meta = {
        "format": FORMAT, "title": title or f"{name_a} vs {name_b}", "run_a": str(run_a),
        "run_b": str(run_b) if run_b is not None else None, "data": str(data) if data is not None else None,
        "split": split, "name_a": name_a, "name_b": name_b, "allow_tie": bool(allow_tie), "seed": seed,
        "created": _now(), "criteria": [c.key for c in CRITERIA],
        "counts": {"pairs": len(pairs), "pairs_available": available, "judges": len(names),
                   "episodes_a": len(eps_a), "episodes_b": len(eps_b)},
        "left_out": left_out,
    }
    # blind pairs: the catalogue spelling of every item the pairs name, by id (both sides alike)
    catalogues = [load_catalogue(str(data)) if data is not None else None, load_catalogue(run_data(run_a)),
                  load_catalogue(run_data(run_b)) if run_b is not None else None]
    meta["catalogue_titles"] = catalogue_titles([ep for pair in pairs for ep in pair], catalogues)
    pair_ids = [secrets.token_urlsafe(12) for _ in pairs]
    tokens = [secrets.token_urlsafe(16) for _ in names]
    plan = plan_judges(len(pairs), len(names), seed)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        conn = _connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            conn.executemany("INSERT INTO pairs VALUES (?, ?, ?, ?, ?)",
                             [(pid, i, a.record_id, a.model_dump_json(), b.model_dump_json())
                              for i, (pid, (a, b)) in enumerate(zip(pair_ids, pairs))])
            conn.executemany("INSERT INTO judges VALUES (?, ?, ?)", [(t, i, n) for i, (t, n) in enumerate(zip(tokens, names))])
            conn.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?)",
                             [(tokens[j], pair_ids[p], pos, side)
                              for j, seen in enumerate(plan) for pos, (p, side) in enumerate(seen)])
            conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints and removes the -wal/-shm files
        taken = f"{path} already exists (a study file is never overwritten)"
        try:
            os.link(tmp, path)  # fails if a study appeared there meanwhile: never overwrite
        except FileExistsError:
            raise FileExistsError(taken) from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise FileExistsError(taken) from None
            os.replace(tmp, path)
    finally:
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
    return Study.open(path)


class Study:
    """An open study file. Every method opens its own connection: safe from many threads."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        keys = meta["criteria"]
        known = {c.key: c for c in CRITERIA}
        self.criteria: tuple[Criterion, ...] = tuple(known.get(k, Criterion(k, k, "")) for k in keys)

    @classmethod
    def open(cls, path: str | Path) -> Study:
        """Open a study file; :class:`StudyError` if the file is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such study file")
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            finally:
                conn.close()
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise StudyError(f"{path}: not an Interplay study file ({exc})") from None
        if meta.get("format") != FORMAT:
            raise StudyError(f"{path}: not an Interplay study file (format {meta.get('format')!r}, expected {FORMAT!r})")
        return cls(path, meta)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = _connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    # -- reading ----------------------------------------------------------------------------

    @property
    def allow_tie(self) -> bool:
        return bool(self.meta["allow_tie"])

    @property
    def names(self) -> tuple[str, str]:
        """Short names of systems A and B."""
        return self.meta["name_a"], self.meta["name_b"]

    def judges(self) -> list[Judge]:
        """The judges in the order they were given."""
        with self._conn() as conn:
            return [Judge(n, t) for n, t in conn.execute("SELECT name, token FROM judges ORDER BY idx")]

    def judge(self, token: str) -> Judge | None:
        """The judge with this token, or None."""
        if not isinstance(token, str) or not token:
            return None
        with self._conn() as conn:
            row = conn.execute("SELECT name, token FROM judges WHERE token = ?", (token,)).fetchone()
        return Judge(*row) if row else None

    def pairs_for(self, token: str) -> list[PairForJudge]:
        """The judge's pairs in their order, sides swapped for them; :class:`UnknownJudge` if no one's."""
        with self._conn() as conn:
            self._require_judge(conn, token)
            rows = conn.execute(
                """SELECT p.pair_id, a.position, p.record_id, p.episode_a, p.episode_b, a.left_side,
                          j.choices, j.comment
                   FROM assignments a JOIN pairs p ON p.pair_id = a.pair_id
                   LEFT JOIN judgements j ON j.token = a.token AND j.pair_id = a.pair_id
                   WHERE a.token = ? ORDER BY a.position""", (token,)).fetchall()
        out = []
        titles = self.meta.get("catalogue_titles") or {}
        for pair_id, pos, record_id, ep_a, ep_b, left_side, choices, comment in rows:
            a, b = (in_catalogue_spelling(EpisodeLog.model_validate_json(e), titles) for e in (ep_a, ep_b))
            left, right = (a, b) if left_side == "A" else (b, a)
            mine = {k: _to_judge(v, left_side) for k, v in json.loads(choices).items()} if choices else {}
            out.append(PairForJudge(pair_id, pos, record_id, left, right, choices is not None, mine, comment or "",
                                    profile=a))
        return out

    def next_unjudged(self, token: str) -> str | None:
        """The id of the judge's first pair (in their order) not judged yet; None when all are.
        One indexed query: what the app asks after every submission."""
        with self._conn() as conn:
            row = conn.execute(
                """SELECT a.pair_id FROM assignments a
                   LEFT JOIN judgements j ON j.token = a.token AND j.pair_id = a.pair_id
                   WHERE a.token = ? AND j.pair_id IS NULL ORDER BY a.position LIMIT 1""", (token,)).fetchone()
        return row[0] if row else None

    def closed(self) -> str | None:
        """When the operator closed the study (ISO time), or None while it is open. Read from the
        file each time: ``interplay study close`` in another process counts at once."""
        with self._conn() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'closed'").fetchone()
        return json.loads(row[0]) if row else None

    def close(self) -> str:
        """Close the study: no judgement is taken any more, and judges may see the results.
        Closing a closed study keeps its first closing time; returns it."""
        with self._conn() as conn:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('closed', ?)", (json.dumps(_now()),))
        return self.closed() or ""

    def state_key(self) -> tuple:
        """A value that changes whenever the results may change (a judgement stored or revised,
        the study closed): what cached exports are keyed by."""
        with self._conn() as conn:
            row = conn.execute("SELECT COUNT(*), MAX(updated), SUM(revisions) FROM judgements").fetchone()
        return (*row, self.closed())

    def progress(self) -> list[dict]:
        """Per judge: name, judged (pairs), total (pairs)."""
        with self._conn() as conn:
            rows = conn.execute(
                """SELECT jd.name, COUNT(j.pair_id), (SELECT COUNT(*) FROM assignments a WHERE a.token = jd.token)
                   FROM judges jd LEFT JOIN judgements j ON j.token = jd.token
                   GROUP BY jd.token ORDER BY jd.idx""").fetchall()
        return [{"name": n, "judged": d, "total": t} for n, d, t in rows]

    def judgements(self) -> list[dict]:
        """Every judgement, one row per criterion, choices in system terms (A / B / tie):
        judge, pair_id, record_id, criterion, choice, left_side (the system the judge saw on the
        left), comment, time (of the latest submission), revisions."""
        with self._conn() as conn:
            rows = conn.execute(
                """SELECT jd.name, j.pair_id, p.record_id, j.choices, a.left_side, j.comment, j.updated, j.revisions
                   FROM judgements j JOIN judges jd ON jd.token = j.token JOIN pairs p ON p.pair_id = j.pair_id
                   JOIN assignments a ON a.token = j.token AND a.pair_id = j.pair_id
                   ORDER BY jd.idx, a.position""").fetchall()
        out = []
        for name, pair_id, record_id, choices, left_side, comment, updated, revisions in rows:
            stored = json.loads(choices)
            for c in self.criteria:
                out.append({"judge": name, "pair_id": pair_id, "record_id": record_id, "criterion": c.key,
                            "choice": stored[c.key], "left_side": left_side, "comment": comment, "time": updated,
                            "revisions": revisions})
        return out

    def results(self) -> StudyResults:
        """Per criterion, over pairs (one majority verdict of the judges per pair): win ratios with
        intervals, binomial tests and agreement; no test pools the criteria (see
        :mod:`interplay.studio.study_stats`)."""
        from interplay.studio.study_stats import study_results

        return study_results(self)

    # -- writing ----------------------------------------------------------------------------

    def submit(self, token: str, pair_id: str, choices: dict[str, str], comment: str = "") -> SubmitResult:
        """Store a judge's choices (left/right/tie per criterion) for a pair, replacing their earlier
        judgement of it. Raises :class:`UnknownJudge`, :class:`TooLarge` (comment),
        :class:`BadSubmission` (unknown pair, criterion missing or unknown, choice not allowed) or
        :class:`StudyClosed`."""
        with self._conn() as conn:
            self._require_judge(conn, token)
            if not isinstance(comment, str):
                raise BadSubmission("comment: must be text")
            if len(comment) > MAX_COMMENT_CHARS:
                raise TooLarge(f"comment: {len(comment)} characters, at most {MAX_COMMENT_CHARS}")
            row = conn.execute("SELECT left_side FROM assignments WHERE token = ? AND pair_id = ?",
                               (token, pair_id if isinstance(pair_id, str) else "")).fetchone()
            if row is None:
                raise BadSubmission(f"pair_id: no pair {str(pair_id)[:40]!r} for this judge")
            stored = self._to_system(choices, row[0])
            now = _now()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM meta WHERE key = 'closed'").fetchone() is not None:
                    raise StudyClosed("the study is closed: no judgement is taken any more")
                replaced = conn.execute("SELECT 1 FROM judgements WHERE token = ? AND pair_id = ?",
                                        (token, pair_id)).fetchone() is not None
                conn.execute(
                    """INSERT INTO judgements (token, pair_id, choices, comment, created, updated) VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT (token, pair_id) DO UPDATE SET choices = excluded.choices,
                       comment = excluded.comment, updated = excluded.updated, revisions = revisions + 1""",
                    (token, pair_id, json.dumps(stored), comment.strip(), now, now))
                judged, total = conn.execute(
                    """SELECT (SELECT COUNT(*) FROM judgements WHERE token = ?),
                              (SELECT COUNT(*) FROM assignments WHERE token = ?)""", (token, token)).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return SubmitResult(pair_id, replaced, judged, total)

    def _require_judge(self, conn: sqlite3.Connection, token: str) -> None:
        if not isinstance(token, str) or conn.execute("SELECT 1 FROM judges WHERE token = ?", (token,)).fetchone() is None:
            raise UnknownJudge("unknown judge token")

    def _to_system(self, choices: dict[str, str], left_side: str) -> dict[str, str]:
        """Validate a judge's left/right/tie choices and map them to A/B/tie."""
        if not isinstance(choices, dict):
            raise BadSubmission("choices: expected one choice per criterion")
        keys = [c.key for c in self.criteria]
        unknown = [k for k in choices if k not in keys]
        if unknown:
            raise BadSubmission(f"choices: unknown criterion {str(unknown[0])[:40]!r}")
        missing = [k for k in keys if k not in choices]
        if missing:
            raise BadSubmission(f"choices: no choice for {', '.join(missing)}")
        allowed = SIDE_CHOICES if self.allow_tie else SIDE_CHOICES[:2]
        out = {}
        for k in keys:
            v = choices[k]
            if v not in allowed:
                why = "this study allows no ties" if v == "tie" else f"expected one of {', '.join(allowed)}"
                raise BadSubmission(f"choices.{k}: {str(v)[:40]!r}: {why}")
            out[k] = v if v == "tie" else (left_side if v == "left" else _other(left_side))
        return out


def _other(side: str) -> str:
    return "B" if side == "A" else "A"


def _to_judge(choice: str, left_side: str) -> str:
    """A stored A/B/tie choice in the terms of a judge who saw ``left_side`` on the left."""
    if choice == "tie":
        return "tie"
    return "left" if choice == left_side else "right"
