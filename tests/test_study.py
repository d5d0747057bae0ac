"""Head-to-head human studies: pairing, blinding, judgements stored in system terms under
concurrency, statistics with answers worked out by hand, and the ``interplay study`` commands."""

from __future__ import annotations

import csv
import json
import math
import random
import sqlite3
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from statistics import NormalDist

import pytest
from conftest import ROOT, subprocess_env
from scipy.stats import binomtest

from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode import Persona, Target, WatchedItem
from interplay.episode_log import EpisodeLog, EpisodeLogError, FailureKind, Termination, TurnLog, read_episodes
from interplay.protocol import Action, Role, mark_title
from interplay.studio.study import (
    CRITERIA,
    MAX_COMMENT_CHARS,
    BadSubmission,
    Study,
    StudyError,
    TooLarge,
    UnknownJudge,
    create_study,
    recorded_episodes,
)
from interplay.studio.study_stats import (
    RESULT_FILES,
    binomial_ci,
    binomial_p,
    majority,
    nominal_alpha,
    overall_alpha,
    pair_verdicts,
    summarize_judgements,
    write_results,
)

KEYS = [c.key for c in CRITERIA]
PERSONA = Persona(summary="Likes silly comedies.", watched=[WatchedItem(title="Airplane! (1980)", text="Very funny.")])
TARGET = Target(item_id="ml:2378", title="Police Academy (1984)", attributes=["comedy", "police"])
U, R = Role.USER, Role.RECOMMENDER


def episode(record_id: str, system: str, k: int = 0, failed: bool = False) -> EpisodeLog:
    """A finished episode of ``system`` (its user_spec tells the sides apart in the tests)."""
    title = TARGET.title
    turns = [TurnLog(index=0, role=U, action=Action.DISCLOSE_GOAL, text=f"A comedy please ({system}).", titles=[]),
             TurnLog(index=1, role=R, action=Action.RECOMMEND, text=f"Try {mark_title(title)}.", titles=[title]),
             TurnLog(index=2, role=U, action=Action.ACCEPT, text="Sounds great!", titles=[])]
    if failed:
        turns = turns[:1]
    return EpisodeLog(
        episode_id=f"{system}-{record_id}-{k}", record_id=record_id, source="test", seed=k, user_spec=system,
        recommender_spec=system, persona=PERSONA, target=TARGET, turns=turns,
        termination=Termination.PROTOCOL_ERROR if failed else Termination.ACCEPTED,
        failure=FailureKind.PROTOCOL if failed else None, num_turns=len(turns),
        accepted_item=None if failed else title, recommended_items=[] if failed else [title])


def write_run(folder: Path, episodes: list[EpisodeLog]) -> Path:
    folder.mkdir(parents=True)
    (folder / "episodes.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in episodes))
    return folder


def two_runs(tmp_path: Path, n: int) -> tuple[Path, Path]:
    ids = [f"rec-{i:03d}" for i in range(n)]
    return (write_run(tmp_path / "sysA", [episode(r, "sysA") for r in ids]),
            write_run(tmp_path / "sysB", [episode(r, "sysB") for r in reversed(ids)]))


def left_side(pair) -> str:
    """The system the judge sees on the left (the test episodes carry it in user_spec)."""
    return {"sysA": "A", "sysB": "B"}[pair.left.user_spec]


def rows_in(study: Study) -> int:
    with sqlite3.connect(study.path) as conn:
        return conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]


# --------------------------------------------------------------------------------- creating


def test_pairs_by_record_id_and_occurrence_with_left_out_counts(tmp_path):
    a = write_run(tmp_path / "sysA", [episode("r1", "sysA", 0), episode("r2", "sysA", 0), episode("r1", "sysA", 1),
                                      episode("r3", "sysA", 0), episode("r1", "sysA", 2),
                                      episode("r2", "sysA", 1, failed=True)])
    b = write_run(tmp_path / "sysB", [episode("r2", "sysB", 0), episode("r1", "sysB", 0), episode("r4", "sysB", 0),
                                      episode("r1", "sysB", 1)])
    study = create_study(tmp_path / "s.sqlite", a, b, judges=["ann", "bob"])
    pairs = study.pairs_for(study.judges()[0].token)
    got = set()
    for p in pairs:
        ep_a, ep_b = (p.left, p.right) if left_side(p) == "A" else (p.right, p.left)
        assert ep_a.record_id == ep_b.record_id == p.record_id
        got.add((ep_a.episode_id, ep_b.episode_id))
    # the k-th occurrence of a record in A meets its k-th occurrence in B
    assert got == {("sysA-r1-0", "sysB-r1-0"), ("sysA-r2-0", "sysB-r2-0"), ("sysA-r1-1", "sysB-r1-1")}
    assert study.meta["left_out"] == {"only_a": 2, "only_b": 1, "failed_a": 1, "failed_b": 0}  # r3, third r1; r4
    assert study.meta["counts"]["pairs"] == 3 and study.meta["name_a"] == "sysA" and study.meta["name_b"] == "sysB"
    assert [j.name for j in study.judges()] == ["ann", "bob"]
    assert len({j.token for j in study.judges()}) == 2 and all(len(j.token) >= 20 for j in study.judges())
    assert len({p.pair_id for p in pairs}) == 3 and all(len(p.pair_id) >= 16 for p in pairs)
    # the same pairs for the other judge, under the same unguessable ids
    assert {p.pair_id for p in study.pairs_for(study.judges()[1].token)} == {p.pair_id for p in pairs}
    # the study is self-contained: it opens without the run folders
    for f in (a / "episodes.jsonl", b / "episodes.jsonl"):
        f.unlink()
    again = Study.open(study.path)
    assert len(again.pairs_for(again.judges()[0].token)) == 3


def test_limit_no_pair_existing_file_and_bad_lines_leave_nothing(tmp_path):
    a, b = two_runs(tmp_path, 5)
    study = create_study(tmp_path / "out" / "s.sqlite", a, b, judges=2, limit=2)
    assert study.meta["counts"]["pairs"] == 2 and study.meta["counts"]["pairs_available"] == 5
    assert len(study.pairs_for(study.judges()[1].token)) == 2
    assert [j.name for j in study.judges()] == ["judge-1", "judge-2"]
    with pytest.raises(FileExistsError, match="already exists"):
        create_study(study.path, a, b)
    other = write_run(tmp_path / "other", [episode("nowhere", "sysB")])
    with pytest.raises(StudyError, match="no pair") as exc:
        create_study(tmp_path / "out" / "none.sqlite", a, other)
    assert str(a) in str(exc.value) and str(other) in str(exc.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    line = json.loads(episode("rec-000", "sysB").model_dump_json())
    del line["persona"]
    (bad / "episodes.jsonl").write_text(episode("rec-001", "sysB").model_dump_json() + "\n" + json.dumps(line) + "\n")
    with pytest.raises(EpisodeLogError, match=r"episodes\.jsonl:2: field 'persona'"):
        create_study(tmp_path / "out" / "bad.sqlite", a, bad)
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        create_study(tmp_path / "out" / "bad.sqlite", a, tmp_path / "missing")
    with pytest.raises(StudyError, match="the same run"):
        create_study(tmp_path / "out" / "bad.sqlite", a, tmp_path / "sysA")
    with pytest.raises(StudyError, match="names must differ"):
        create_study(tmp_path / "out" / "bad.sqlite", a, b, judges=["x", "x"])
    # no half-written study, no temporary file, no WAL left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s.sqlite"]


def test_sides_and_orders_random_per_judge_balanced_and_reproducible(tmp_path):
    a, b = two_runs(tmp_path, 50)

    def plan(name: str, seed: int) -> list[list[tuple[str, str]]]:
        study = create_study(tmp_path / name, a, b, judges=4, seed=seed)
        return [[(p.record_id, left_side(p)) for p in study.pairs_for(j.token)] for j in study.judges()]

    first, same, other = plan("s0.sqlite", 0), plan("s0-again.sqlite", 0), plan("s1.sqlite", 1)
    assert first == same  # reproducible with the seed
    assert first != other
    for seen in first:
        assert sorted(r for r, _ in seen) == [f"rec-{i:03d}" for i in range(50)]  # every pair once
        assert [s for _, s in seen].count("A") == 25  # both sides occur, balanced within the judge
    # per judge: orders and sides differ between judges
    assert len({tuple(r for r, _ in seen) for seen in first}) == 4
    sides = [dict(seen) for seen in first]
    assert len({tuple(s[f"rec-{i:03d}"] for i in range(50)) for s in sides}) == 4


# --------------------------------------------------------------------------------- judging


def test_left_right_stored_as_systems_and_a_resubmission_replaces(tmp_path):
    a, b = two_runs(tmp_path, 6)
    study = create_study(tmp_path / "s.sqlite", a, b, judges=2)
    judge = study.judges()[0]
    pairs = study.pairs_for(judge.token)
    assert not any(p.done for p in pairs)
    sides = {p.pair_id: left_side(p) for p in pairs}
    assert set(sides.values()) == {"A", "B"}
    for p in pairs:
        first = study.submit(judge.token, p.pair_id, {k: "left" for k in KEYS}, comment=" first ")
        assert not first.replaced and first.total == 6
    assert first.judged == 6 and rows_in(study) == 6
    stored = {(r["pair_id"], r["criterion"]): r["choice"] for r in study.judgements()}
    assert stored == {(pid, k): side for pid, side in sides.items() for k in KEYS}  # "left" is the system shown left
    # the judge changes their mind on one pair: the judgement is replaced, never duplicated
    pid = pairs[0].pair_id
    choices = {k: "right" for k in KEYS} | {"expertise": "left"}
    again = study.submit(judge.token, pid, choices, comment="second thoughts")
    assert again.replaced and again.judged == 6 and rows_in(study) == 6
    mine = next(p for p in study.pairs_for(judge.token) if p.pair_id == pid)
    assert mine.done and mine.choices == choices and mine.comment == "second thoughts"
    other = "B" if sides[pid] == "A" else "A"
    rows = [r for r in study.judgements() if r["pair_id"] == pid]
    assert {r["criterion"]: r["choice"] for r in rows} == {k: other for k in KEYS} | {"expertise": sides[pid]}
    assert {r["revisions"] for r in rows} == {2} and {r["comment"] for r in rows} == {"second thoughts"}
    assert study.progress() == [{"name": "judge-1", "judged": 6, "total": 6}, {"name": "judge-2", "judged": 0, "total": 6}]


def test_each_kind_of_bad_submission_is_refused_and_stores_nothing(tmp_path):
    a, b = two_runs(tmp_path, 3)
    study = create_study(tmp_path / "s.sqlite", a, b, judges=1)
    token = study.judges()[0].token
    pid = study.pairs_for(token)[0].pair_id
    good = {k: "left" for k in KEYS}
    assert study.judge(token).name == "judge-1" and study.judge("not-a-token") is None and study.judge("") is None
    with pytest.raises(UnknownJudge) as exc:
        study.submit("not-a-token", pid, good)
    assert exc.value.http_status == 403
    with pytest.raises(UnknownJudge):
        study.pairs_for("not-a-token")
    bad = [("no-such-pair", good, "pair_id"),
           (pid, {k: "left" for k in KEYS[1:]}, "no choice for user_control"),
           (pid, good | {"charm": "left"}, "unknown criterion 'charm'"),
           (pid, good | {"flow": "up"}, "choices.flow"),
           (pid, good | {"flow": "tie"}, "allows no ties"),
           (pid, good | {"flow": "A"}, "choices.flow")]  # judges answer left/right, never in system terms
    for pair_id, choices, message in bad:
        with pytest.raises(BadSubmission, match=message) as err:
            study.submit(token, pair_id, choices)
        assert err.value.http_status == 400 and isinstance(err.value, ValueError)
    with pytest.raises(TooLarge) as big:
        study.submit(token, pid, good, comment="x" * (MAX_COMMENT_CHARS + 1))
    assert big.value.http_status == 413
    assert rows_in(study) == 0
    assert not study.submit(token, pid, good, comment="x" * MAX_COMMENT_CHARS).replaced
    assert rows_in(study) == 1
    # a study that allows ties takes them
    tied = create_study(tmp_path / "ties.sqlite", a, b, judges=1, allow_tie=True)
    t = tied.judges()[0].token
    tied.submit(t, tied.pairs_for(t)[0].pair_id, good | {"flow": "tie"})
    assert [r["choice"] for r in tied.judgements() if r["criterion"] == "flow"] == ["tie"]


def test_twenty_judges_submitting_at_once_lose_and_duplicate_nothing(tmp_path):
    a, b = two_runs(tmp_path, 50)
    study = create_study(tmp_path / "s.sqlite", a, b, judges=20, seed=3)
    judges = study.judges()
    plans = {j.token: study.pairs_for(j.token) for j in judges}
    expected: dict[tuple[str, str, str], str] = {}  # (judge, pair, criterion) -> A/B, as last sent
    results: dict[str, list] = {j.token: [] for j in judges}
    errors: list[BaseException] = []
    start = threading.Barrier(len(judges))

    def work(judge) -> None:
        rng = random.Random(judge.token)
        try:
            start.wait()
            pairs = plans[judge.token]
            for p in pairs + pairs[:10]:  # every pair, then ten again: the judge changes their mind
                choices = {k: rng.choice(("left", "right")) for k in KEYS}
                results[judge.token].append(Study.open(study.path).submit(judge.token, p.pair_id, choices))
                side = left_side(p)
                for k, v in choices.items():
                    expected[(judge.name, p.pair_id, k)] = side if v == "left" else ("B" if side == "A" else "A")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(j,)) for j in judges]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sum(len(r) for r in results.values()) == 1200
    assert sum(not x.replaced for r in results.values() for x in r) == 1000
    assert sum(x.replaced for r in results.values() for x in r) == 200
    assert rows_in(study) == 1000
    got = {(r["judge"], r["pair_id"], r["criterion"]): r["choice"] for r in study.judgements()}
    assert len(study.judgements()) == 6000 and got == expected
    assert all(p == {"name": p["name"], "judged": 50, "total": 50} for p in study.progress())


# --------------------------------------------------------------------------------- statistics


def test_binomial_and_alpha_known_answers():
    # two-sided exact binomial test, p = 0.5: P(X <= 1) + P(X >= 9) = 2 * (1 + 10) / 2**10 = 22/1024
    assert binomial_p(9, 10) == pytest.approx(22 / 1024, abs=1e-12)
    assert binomial_p(1, 10) == pytest.approx(22 / 1024, abs=1e-12)
    assert binomial_p(5, 10) == pytest.approx(1.0)
    # 18 of 20: 2 * (C(20,0) + C(20,1) + C(20,2)) / 2**20 = 2 * 211 / 1048576
    assert binomial_p(18, 20) == pytest.approx(422 / 1048576, abs=1e-12)
    assert binomial_p(0, 0) is None
    # Wilson score interval of 4 of 5 at 95%: z = 1.95996..., p = 0.8, n = 5:
    #   centre = (p + z^2/2n) / (1 + z^2/n), half width = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    z, ph, n = NormalDist().inv_cdf(0.975), 0.8, 5
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n))
    assert binomial_ci(4, 5) == pytest.approx((centre - half, centre + half))
    assert binomial_ci(4, 5) == pytest.approx((0.3755, 0.9638), abs=1e-4)
    assert binomial_ci(0, 0) is None
    # Krippendorff's alpha, nominal, two judges, six units (the sixth rated once: not pairable).
    #   judge 1: A  A  B  B  tie  A
    #   judge 2: A  B  B  B  tie  -
    # Coincidences (each pairable unit with m = 2 values adds 1/(m-1) = 1 per ordered pair of values):
    #   u1 (A,A): o_AA += 2; u2 (A,B): o_AB += 1, o_BA += 1; u3, u4 (B,B): o_BB += 4; u5 (tie,tie): o_tt += 2
    #   n = 10 values; n_A = 3, n_B = 5, n_tie = 2
    #   D_o = (o_AB + o_BA) / n = 2/10
    #   D_e = sum_{c != k} n_c n_k / (n (n - 1)) = 2 (3*5 + 3*2 + 5*2) / 90 = 62/90
    #   alpha = 1 - D_o / D_e = 1 - (2/10) (90/62) = 1 - 18/62 = 22/31
    table = [["A", "A", "B", "B", "tie", "A"], ["A", "B", "B", "B", "tie", None]]
    assert nominal_alpha(table) == pytest.approx(22 / 31)
    assert nominal_alpha([["A", "B", "tie", "A"], ["A", "B", "tie", "A"]]) == pytest.approx(1.0)  # perfect agreement
    assert nominal_alpha([["A", "A"], ["A", "A"]]) is None  # a single value: undefined
    assert nominal_alpha([["A", "B", "A"]]) is None  # one judge
    assert nominal_alpha([["A", None], [None, "B"]]) is None  # no unit rated twice


def judged(*table: tuple[str, str, dict[str, str]]) -> list[dict]:
    """Judgement rows as :meth:`Study.judgements` gives them, from (judge, pair, {criterion: choice})."""
    return [{"judge": j, "pair_id": p, "record_id": f"rec-{p}", "criterion": k, "choice": v}
            for j, p, choices in table for k, v in choices.items()]


def test_majority_verdict_of_one_pair():
    assert majority(["A", "A", "B"]) == "A" and majority(["B", "A", "B"]) == "B"
    assert majority(["A", "B"]) == "tie"  # judges split evenly: no verdict
    assert majority(["A", "B", "tie"]) == "tie"  # one each
    assert majority(["A", "A", "tie"]) == "A" and majority(["tie", "A", "A"]) == "A"
    assert majority(["tie", "tie", "A"]) == "tie"  # most judges saw no difference
    assert majority(["A", "tie"]) == "tie"
    assert majority(["B"]) == "B" and majority(["tie"]) == "tie"  # one judge: their pick
    assert majority(["A", "A", "B", "B", "tie"]) == "tie"
    with pytest.raises(ValueError, match="no pick"):
        majority([])
    with pytest.raises(ValueError, match="unknown pick 'left'"):
        majority(["A", "left"])


def test_five_pairs_three_judges_one_majority_verdict_per_pair():
    """Known answer: 5 pairs x 3 judges on two criteria; the verdicts are worked out by hand."""
    ex, fl = "expertise", "flow"
    rows = judged(
        #  judge   pair   expertise   flow
        ("ann", "p1", {ex: "A", fl: "B"}), ("bob", "p1", {ex: "A", fl: "B"}), ("cy", "p1", {ex: "A", fl: "A"}),
        ("ann", "p2", {ex: "A", fl: "A"}), ("bob", "p2", {ex: "A", fl: "B"}), ("cy", "p2", {ex: "B", fl: "B"}),
        ("ann", "p3", {ex: "A", fl: "tie"}), ("bob", "p3", {ex: "B", fl: "tie"}), ("cy", "p3", {ex: "B", fl: "A"}),
        ("ann", "p4", {ex: "A", fl: "B"}), ("bob", "p4", {ex: "B", fl: "A"}), ("cy", "p4", {ex: "tie", fl: "B"}),
        ("ann", "p5", {ex: "A", fl: "B"}), ("bob", "p5", {ex: "A", fl: "B"}), ("cy", "p5", {ex: "tie", fl: "B"}),
    )
    # expertise: p1 AAA -> A, p2 AAB -> A, p3 ABB -> B, p4 A,B,tie -> tie, p5 A,A,tie -> A
    #   pairs: 3 A, 1 B, 1 tie; n = 4 (per judgement it would be 9 A, 4 B, 2 ties of 15)
    # flow: p1 BBA -> B, p2 ABB -> B, p3 tie,tie,A -> tie, p4 BAB -> B, p5 BBB -> B
    #   pairs: 0 A, 4 B, 1 tie; n = 4 (per judgement 3 A, 10 B, 2 ties)
    crits = [c for c in CRITERIA if c.key in (ex, fl)]
    res = {r.key: r for r in summarize_judgements(rows, crits)}
    assert list(res) == [ex, fl]  # per criterion only, nothing pooled
    e, f = res[ex], res[fl]
    assert (e.wins_a, e.wins_b, e.ties, e.n) == (3, 1, 1, 4)
    assert (f.wins_a, f.wins_b, f.ties, f.n) == (0, 4, 1, 4)
    # the binomial test of the hand-computed counts: 3 of 4 -> 2 (C(4,3) + C(4,4)) / 2^4 = 10/16
    assert e.p_value == pytest.approx(binomtest(3, 4, 0.5).pvalue) == pytest.approx(10 / 16)
    assert f.p_value == pytest.approx(binomtest(0, 4, 0.5).pvalue) == pytest.approx(2 / 16)
    assert e.win_ratio_a == pytest.approx(3 / 4) and f.win_ratio_a == 0.0
    assert not e.significant and not f.significant
    wilson = binomtest(3, 4, 0.5).proportion_ci(confidence_level=0.95, method="wilson")
    assert (e.ci_low, e.ci_high) == pytest.approx((wilson.low, wilson.high))
    assert f.ci_low == pytest.approx(0.0, abs=1e-12)
    assert f.ci_high == pytest.approx(binomtest(0, 4).proportion_ci(method="wilson").high)
    verdicts = {(v["pair_id"], v["criterion"]): v["verdict"] for v in pair_verdicts(rows, crits)}
    assert verdicts == {("p1", ex): "A", ("p2", ex): "A", ("p3", ex): "B", ("p4", ex): "tie", ("p5", ex): "A",
                        ("p1", fl): "B", ("p2", fl): "B", ("p3", fl): "tie", ("p4", fl): "B", ("p5", fl): "B"}
    p4 = next(v for v in pair_verdicts(rows, crits) if v["pair_id"] == "p4" and v["criterion"] == ex)
    assert p4 == {"pair_id": "p4", "record_id": "rec-p4", "criterion": ex, "verdict": "tie",
                  "judges_a": 1, "judges_b": 1, "judges_tie": 1}


def test_the_trials_are_pairs_not_judgements():
    """Three judges agreeing on five pairs are five trials, not fifteen: per judgement, 15 of 15 A
    would give p = 2/2^15 (significant); per pair it is 5 of 5, p = 2/2^5 = 0.0625 (not). And a
    majority of two of three judges outweighs a unanimous pair: four 2-1 pairs for A and one 0-3
    pair for B are 4 A to 1 B over pairs, where the judgements are 8 A to 7 B."""
    unanimous = judged(*[(j, f"p{i}", {"relevance": "A"}) for i in range(5) for j in ("ann", "bob", "cy")])
    crits = [c for c in CRITERIA if c.key == "relevance"]
    (r,) = summarize_judgements(unanimous, crits)
    assert (r.wins_a, r.wins_b, r.ties, r.n) == (5, 0, 0, 5)
    assert r.p_value == pytest.approx(2 / 2**5) and not r.significant
    assert binomtest(15, 15).pvalue < 0.05  # what counting every judgement would have claimed
    two_to_one = (("ann", "A"), ("bob", "A"), ("cy", "B"))
    split = judged(*[(j, f"p{i}", {"relevance": c}) for i in range(4) for j, c in two_to_one],
                   *[(j, "p4", {"relevance": "B"}) for j in ("ann", "bob", "cy")])
    (r,) = summarize_judgements(split, crits)
    assert (r.wins_a, r.wins_b, r.ties, r.n) == (4, 1, 0, 5)
    assert r.win_ratio_a == pytest.approx(4 / 5) and r.p_value == pytest.approx(binomtest(4, 5).pvalue)


def test_no_pooled_overall_row_or_p_value(tmp_path):
    a, b = two_runs(tmp_path, 4)
    study = create_study(tmp_path / "s.sqlite", a, b, judges=2)
    for judge in study.judges():
        for p in study.pairs_for(judge.token):
            study.submit(judge.token, p.pair_id, {k: "left" if left_side(p) == "A" else "right" for k in KEYS})
    res = study.results()
    assert [r.key for r in res.rows] == KEYS  # one row per criterion, none pooled
    with pytest.raises(KeyError):
        res.row("overall")
    saved = res.to_dict()
    assert [c["key"] for c in saved["criteria"]] == KEYS
    assert "overall" not in json.dumps(saved["criteria"]).lower()
    # the only figure across criteria is the judges' agreement, with no test attached
    assert set(saved) == {"title", "name_a", "name_b", "criteria", "overall_alpha", "progress", "study", "verdicts"}
    assert saved["overall_alpha"] is None  # every judgement A: a single value, alpha undefined
    paths = write_results(study, tmp_path / "res")
    with paths["results.csv"].open() as fh:
        assert [r["key"] for r in csv.DictReader(fh)] == KEYS


def test_statistics_do_not_depend_on_the_order_of_the_rows():
    rng = random.Random(7)
    pairs = [f"pair-{rng.randrange(10**6):06d}" for _ in range(12)]
    rows = judged(*[(j, p, {k: rng.choice(("A", "B", "tie")) for k in KEYS})
                    for p in pairs for j in ("zed", "ann", "moe", "bob")[: rng.randint(1, 4)]])
    first = [asdict(r) for r in summarize_judgements(rows, CRITERIA)]
    verdicts, alpha = pair_verdicts(rows, CRITERIA), overall_alpha(rows, CRITERIA)
    assert [v["pair_id"] for v in verdicts] == sorted(v["pair_id"] for v in verdicts)
    for _ in range(5):
        rng.shuffle(rows)
        assert [asdict(r) for r in summarize_judgements(rows, CRITERIA)] == first
        assert pair_verdicts(rows, CRITERIA) == verdicts and overall_alpha(rows, CRITERIA) == alpha
    with pytest.raises(ValueError, match="twice"):
        summarize_judgements(rows + rows[:1], CRITERIA)  # a judgement given twice is refused, not resolved by order
    with pytest.raises(ValueError, match="choice 'left'"):
        summarize_judgements(rows + [dict(rows[0], judge="new", choice="left")], CRITERIA)


def test_study_results_known_answers_and_files(tmp_path):
    a, b = two_runs(tmp_path, 10)
    study = create_study(tmp_path / "s.sqlite", a, b, judges=["ann", "bob", "cy"], allow_tie=True, title="A/B")

    def in_judge_terms(pair, system_choices: dict[str, str]) -> dict[str, str]:
        side = left_side(pair)
        return {k: "tie" if v == "tie" else ("left" if v == side else "right") for k, v in system_choices.items()}

    # ann and bob judge the same: expertise A on 9 of 10 pairs, relevance A on 5, flow a tie on 2 and
    # A on the rest, everything else A; cy judges nothing. Two judges agreeing: each pair's verdict
    # is their common pick, and each pair counts once.
    for judge in study.judges()[:2]:
        for i, p in enumerate(sorted(study.pairs_for(judge.token), key=lambda p: p.record_id)):
            system = {k: "A" for k in KEYS} | {"expertise": "A" if i < 9 else "B", "relevance": "A" if i < 5 else "B",
                                                "flow": "tie" if i < 2 else "A"}
            study.submit(judge.token, p.pair_id, in_judge_terms(p, system))
    res = study.results()
    row = {r.key: r for r in res.rows}
    assert [r.key for r in res.rows] == KEYS
    e = row["expertise"]
    assert (e.wins_a, e.wins_b, e.ties, e.n) == (9, 1, 0, 10) and e.win_ratio_a == pytest.approx(0.9)
    # 9 of 10: P(X <= 1) + P(X >= 9) = 2 * (1 + 10) / 2**10 = 22/1024
    assert e.p_value == pytest.approx(22 / 1024) and e.significant
    assert e.ci_low < 0.9 < e.ci_high
    assert row["relevance"].win_ratio_a == pytest.approx(0.5) and row["relevance"].p_value == pytest.approx(1.0)
    assert not row["relevance"].significant
    f = row["flow"]
    assert (f.wins_a, f.wins_b, f.ties, f.n) == (8, 0, 2, 8) and f.p_value == pytest.approx(2 / 2**8)
    u = row["user_control"]
    assert (u.wins_a, u.n) == (10, 10) and u.p_value == pytest.approx(2 / 2**10)
    # the two judges agree perfectly: alpha 1 where two values occur, undefined where one does
    assert e.alpha == pytest.approx(1.0) and f.alpha == pytest.approx(1.0) and u.alpha is None
    assert res.overall_alpha == pytest.approx(1.0)  # agreement over all (pair, criterion) units
    assert res.progress == [{"name": "ann", "judged": 10, "total": 10}, {"name": "bob", "judged": 10, "total": 10},
                            {"name": "cy", "judged": 0, "total": 10}]
    paths = write_results(study, tmp_path / "res")
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == sorted(
        ["results.json", "judgements.csv", "verdicts.csv", "results.csv", "results.png"])
    saved = json.loads(paths["results.json"].read_text())
    assert saved["title"] == "A/B" and saved["criteria"][1]["wins_a"] == 9 and saved["name_a"] == "sysA"
    assert saved["overall_alpha"] == pytest.approx(1.0) and len(saved["verdicts"]) == 10 * 6
    assert len(paths["judgements.csv"].read_text().splitlines()) == 1 + 2 * 10 * 6
    with paths["verdicts.csv"].open() as fh:
        verdicts = list(csv.DictReader(fh))
    assert len(verdicts) == 10 * 6 and {v["judges_a"] for v in verdicts if v["criterion"] == "user_control"} == {"2"}
    assert sum(v["verdict"] == "tie" for v in verdicts) == 2  # flow on two pairs
    assert len(paths["results.csv"].read_text().splitlines()) == 1 + 6
    assert paths["results.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------- human side, opening


def _turn(role: Role, action: Action, text: str, titles: list[str] | None = None) -> RecordTurn:
    return RecordTurn(role=role, action=action, text=text, titles=titles or [])


def test_recorded_episodes_and_a_study_against_human_dialogues(tmp_path):
    pa, ap = "Police Academy (1984)", "American Pie 2 (2001)"
    recs = [
        DialogueRecord(id="acc", source="test", split="test", persona=PERSONA, target=TARGET,
                       turns=[_turn(U, Action.DISCLOSE_GOAL, "A comedy please."),
                              _turn(R, Action.RECOMMEND, f"Maybe {mark_title(ap)}?"),
                              _turn(U, Action.FEEDBACK, "Not that one."),
                              _turn(R, Action.RECOMMEND, f"Then {mark_title(pa)}."),
                              _turn(U, Action.ACCEPT, "Yes!")],
                       outcome=Outcome(accepted_item=pa, rejected_items=[ap])),
        DialogueRecord(id="open", source="test", split="test", persona=PERSONA, target=TARGET,
                       turns=[_turn(U, Action.DISCLOSE_GOAL, "Something with cops."),
                              _turn(R, Action.INQUIRE, "Old or new?", titles=["Source Title (1990)"])]),
        DialogueRecord(id="no-target", source="test", split="test", persona=PERSONA, target=None,
                       turns=[_turn(U, Action.GREETING, "Hi.")]),
    ]
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in recs))
    eps = recorded_episodes(data, "test")
    assert [e.record_id for e in eps] == ["acc", "open"]  # no target: no episode
    acc, open_ = eps
    assert (acc.user_spec, acc.recommender_spec, acc.termination, acc.accepted_item) == (
        "human", "human", Termination.ACCEPTED, pa)
    assert acc.num_turns == 5 and [t.index for t in acc.turns] == list(range(5))
    assert acc.turns[3].titles == [pa] and acc.recommended_items == [ap, pa]
    assert open_.termination is Termination.MAX_TURNS and open_.accepted_item is None
    assert open_.turns[1].titles == ["Source Title (1990)"]  # nothing marked: the record's own titles
    run = write_run(tmp_path / "sysA", [episode("acc", "sysA"), episode("open", "sysA"), episode("elsewhere", "sysA")])
    study = create_study(tmp_path / "s.sqlite", run, data=data, split="test", judges=1)
    assert study.meta["counts"]["pairs"] == 2 and study.meta["left_out"]["only_a"] == 1
    assert study.meta["name_b"] == "human (data/test)" and study.meta["data"] == str(data)
    specs = {(p.left.user_spec, p.right.user_spec) for p in study.pairs_for(study.judges()[0].token)}
    assert specs <= {("sysA", "human"), ("human", "sysA")}
    with pytest.raises(StudyError, match="exactly one"):
        create_study(tmp_path / "t.sqlite", run, run, data=data, split="test")


def test_both_sides_spell_titles_as_the_catalogue_does_by_item_id(tmp_path):
    """Blind pairs: the human dialogue's own spelling ("police academy") is shown in the
    catalogue's ("Police Academy (1984)"), as the system's is; a title with no catalogue item
    keeps the text's spelling; the stored logs keep what was written."""
    from interplay.catalogue import Item
    from interplay.data.schema import ItemRef

    said, title = "police academy", TARGET.title
    data = tmp_path / "data"
    data.mkdir()
    (data / "catalogue.jsonl").write_text(Item(item_id=TARGET.item_id, title=title, attributes=("comedy",))
                                          .model_dump_json() + "\n")
    rec = DialogueRecord(
        id="r1", source="test", split="test", persona=PERSONA, target=TARGET,
        turns=[_turn(U, Action.DISCLOSE_GOAL, "A comedy please."),
               _turn(R, Action.RECOMMEND, f"Maybe {mark_title(said)} or {mark_title('some obscure film')}?"),
               _turn(U, Action.ACCEPT, "Yes!")],
        outcome=Outcome(accepted_item=said),
        items={said: ItemRef(title=said, item_id=TARGET.item_id, in_catalogue=True),
               "some obscure film": ItemRef(title="some obscure film", item_id="redial:9", in_catalogue=False)})
    (data / "test.jsonl").write_text(rec.model_dump_json() + "\n")
    [human] = recorded_episodes(data, "test")
    assert human.turns[1].item_ids == [TARGET.item_id, "redial:9"]  # resolved by the record, per title
    system = episode("r1", "sysA")
    system.turns[1] = system.turns[1].model_copy(update={"item_ids": [TARGET.item_id]})
    run = write_run(tmp_path / "sysA", [system])
    study = create_study(tmp_path / "s.sqlite", run, data=data, split="test", judges=2)
    assert study.meta["catalogue_titles"] == {TARGET.item_id: title}
    for judge in study.judges():
        [pair] = study.pairs_for(judge.token)
        sides = {p.user_spec: p for p in (pair.left, pair.right)}
        assert sides["human"].turns[1].text == f"Maybe {mark_title(title)} or {mark_title('some obscure film')}?"
        assert sides["human"].turns[1].titles == [title, "some obscure film"]
        assert sides["sysA"].turns[1].text == f"Try {mark_title(title)}."
        assert pair.profile.user_spec == "sysA"  # the profile shown is A's, whichever side A is on
    with sqlite3.connect(study.path) as conn:  # the stored log keeps the human spelling
        stored = conn.execute("SELECT episode_b FROM pairs").fetchone()[0]
    assert mark_title(said) in stored


def test_a_closed_study_takes_no_judgement_and_says_when_it_closed(tmp_path):
    from interplay.studio.study import StudyClosed

    a, b = two_runs(tmp_path, 2)
    study = create_study(tmp_path / "s.sqlite", a, b, judges=1)
    token = study.judges()[0].token
    pairs = study.pairs_for(token)
    key = study.state_key()
    study.submit(token, pairs[0].pair_id, {k: "left" for k in KEYS})
    assert study.state_key() != key and study.closed() is None
    key = study.state_key()
    study.submit(token, pairs[0].pair_id, {k: "right" for k in KEYS})  # a revision changes the state too
    assert study.state_key() != key
    when = study.close()
    assert when and Study.open(study.path).closed() == when and study.close() == when  # the first time stays
    with pytest.raises(StudyClosed) as refused:
        study.submit(token, pairs[1].pair_id, {k: "left" for k in KEYS})
    assert refused.value.http_status == 409 and rows_in(study) == 1


def test_open_refuses_what_is_not_a_study(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("hello\n" * 200)
    with pytest.raises(StudyError, match="not an Interplay study file"):
        Study.open(text)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StudyError, match="not an Interplay study file"):
        Study.open(other)
    with pytest.raises(FileNotFoundError):
        Study.open(tmp_path / "missing.sqlite")
    a, b = two_runs(tmp_path, 2)
    study = create_study(tmp_path / "s.sqlite", a, b)
    with sqlite3.connect(study.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --------------------------------------------------------------------------------- the CLI

INTERPLAY = [sys.executable, "-m", "interplay.cli"]


def cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    # wide columns: rich wraps at 80 off a terminal, and an error must stay one line
    proc = subprocess.run([*INTERPLAY, *map(str, args)], env=subprocess_env(COLUMNS="400"), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_cli_create_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path):
    a, b = two_runs(tmp_path, 3)
    out = tmp_path / "studies" / "s.sqlite"
    made = cli("study", "create", "--a", a, "--b", b, "--out", out, "--judges", 2, "--ties", "--limit", 2)
    assert "pairs: 2 (first 2 of 3)" in made.stdout and made.stdout.count("http://127.0.0.1:8765/judge/") == 2
    before = out.read_bytes()
    runs = {"existing study file": (["--a", a, "--b", b, "--out", out], "already exists"),
            "missing folder": (["--a", tmp_path / "nowhere", "--b", b, "--out", out.with_name("t.sqlite")],
                               "no such run folder"),
            "no pair": (["--a", a, "--b", write_run(tmp_path / "other", [episode("x", "sysB")]),
                         "--out", out.with_name("t.sqlite")], "no pair"),
            "no side B": (["--a", a, "--out", out.with_name("t.sqlite")], "side B")}
    for what, (args, message) in runs.items():
        got = cli("study", "create", *args, check=False)
        assert got.returncode == 2 and message in got.stdout, what
        assert len(got.stdout.strip().splitlines()) == 1 and "Traceback" not in got.stderr, what
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.sqlite"]  # nothing half-written
    closed = cli("study", "close", out)
    assert closed.stdout.startswith(f"{out}: closed 20") and Study.open(out).closed() is not None
    assert "already closed" in cli("study", "close", out).stdout
    not_study = cli("study", "results", a / "episodes.jsonl", check=False)
    assert not_study.returncode == 2 and "not an Interplay study file" in not_study.stdout


@pytest.mark.slow
def test_cli_create_and_results_on_simulated_runs(tmp_path):
    for name, turns in (("A", 6), ("B", 4)):
        cli("simulate", "--no-progress", "--user", "rule", "--recommender", "rule", "--episodes", 4,
            "--max-turns", turns, "--out", tmp_path / name)
    out = tmp_path / "studies" / "s.sqlite"
    made = cli("study", "create", "--a", tmp_path / "A", "--b", tmp_path / "B", "--out", out,
               "--judge", "ann", "--judge", "bob", "--seed", 1)
    assert "pairs: 4" in made.stdout and "left out: 0 episodes of A" in made.stdout
    study = Study.open(out)
    for j in study.judges():
        assert f"/judge/{j.token}" in made.stdout and f"http://127.0.0.1:8765/judge/{j.token}" in made.stdout
    ann = study.judges()[0]
    pairs = study.pairs_for(ann.token)
    run_a, run_b = ({e.episode_id: e for e in read_episodes(tmp_path / x / "episodes.jsonl")} for x in "AB")
    assert sorted(p.left.episode_id for p in pairs) == sorted(run_a)
    for p in pairs:  # the real logs, stored whole, one of each run
        assert (p.left, p.right) in ((run_a[p.left.episode_id], run_b[p.left.episode_id]),
                                     (run_b[p.left.episode_id], run_a[p.left.episode_id]))
    for p in pairs:
        study.submit(ann.token, p.pair_id, {k: "left" for k in KEYS})
    res = cli("study", "results", out, "--out", tmp_path / "res")
    assert "User control" in res.stdout and "ann" in res.stdout
    assert "Overall" not in res.stdout and "over all (pair, criterion) units" in res.stdout  # no pooled row
    assert all((tmp_path / "res" / f).is_file() for f in RESULT_FILES)
    saved = json.loads((tmp_path / "res" / "results.json").read_text())
    assert [r["key"] for r in saved["criteria"]] == KEYS
    # one judge, 4 pairs: each pair's verdict is that judge's pick
    assert all((r["wins_a"] + r["wins_b"], r["ties"], r["n"]) == (4, 0, 4) for r in saved["criteria"])
