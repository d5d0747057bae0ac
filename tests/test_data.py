"""Data layer: catalogue matching, loaders on real data and on the PEARL fixture, leaks, bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path
from collections import Counter

import pytest
from conftest import ROOT, subprocess_env

from interplay.catalogue import Catalogue, Item, normalize_title
from interplay.data.build import build_dataset, dataset_stats, read_catalogue, read_records
from interplay.data.raw_dialogue import mark_titles
from interplay.data.errors import DataFormatError
from interplay.data.pearl import PearlReport, load_pearl
from interplay.data.schema import DialogueRecord, Outcome, RecordTurn
from interplay.episode import Persona, build_user_view, find_target_leak
from interplay.protocol import Action, Role
from interplay.simulation_data import load_demo

FIXTURE = ROOT / "tests" / "fixtures" / "pearl_sample.jsonl"


@pytest.mark.parametrize("a, b", [("Matrix, The (1999)", "The Matrix (1999)"), ("the matrix (1999)", "MATRIX, THE (1999)"),
                                  ("Ghostbusters (a.k.a. Ghost Busters) (1984)", "Ghostbusters (1984)"),
                                  ("Amélie (2001)", "Amelie (2001)"), ("Se7en  (1995)", "se7en (1995)")])
def test_title_normalisation(a, b):
    assert normalize_title(a) == normalize_title(b)


def test_catalogue_matching():
    cat = Catalogue([
        Item(item_id="ml:1", title="Dumb & Dumber (Dumb and Dumber) (1994)"),
        Item(item_id="ml:2", title="Black Hawk Down (2001)"),
        Item(item_id="ml:3", title="Star Wars: Episode VII - The Force Awakens (2015)"),
        Item(item_id="ml:4", title="Heat (1995)"), Item(item_id="ml:5", title="Heat (1986)"),
    ])
    assert cat.resolve("Dumb and Dumber (1994)").item_id == "ml:1"  # an a.k.a. title
    assert cat.resolve("Black Hawk Down (2002)").item_id == "ml:2"  # year off by one
    assert cat.resolve("Star Wars: The Force Awakens (2015)").item_id == "ml:3"  # fuzzy within the year
    assert cat.resolve("Heat (1995)").item_id == "ml:4"
    assert cat.resolve("Heat") is None  # ambiguous without a year
    assert cat.resolve("Star Wars") is None


def test_mark_titles_never_nests():
    text, titles = mark_titles("I like Halloween: Resurrection (2002) and Halloween (1978)",
                               ["Halloween", "Halloween: Resurrection"])
    assert titles == ["Halloween: Resurrection (2002)", "Halloween (1978)"]
    assert text.count("<movie_title>") == 2 and "<movie_title>Halloween: Resurrection (2002)</movie_title>" in text


def test_record_rules():
    turn = lambda role, action, text="x": RecordTurn(role=role, action=action, text=text)  # noqa: E731
    base = dict(id="r", source="t", split="test", persona=Persona(summary="s"), target=None)
    with pytest.raises(ValueError, match="comes after the acceptance"):
        DialogueRecord(**base, turns=[turn(Role.USER, Action.ACCEPT), turn(Role.RECOMMENDER, Action.INQUIRE),
                                      turn(Role.USER, Action.FEEDBACK)], outcome=Outcome(accepted_item="A"))
    with pytest.raises(ValueError, match="no user turn is 'accept'"):
        DialogueRecord(**base, turns=[turn(Role.USER, Action.FEEDBACK)], outcome=Outcome(accepted_item="A"))
    with pytest.raises(ValueError, match="may not accept"):
        turn(Role.RECOMMENDER, Action.ACCEPT)
    with pytest.raises(ValueError, match="nested_tag"):
        turn(Role.RECOMMENDER, Action.RECOMMEND, "<movie_title><movie_title>A</movie_title></movie_title>")


def test_pearl_loader_on_fixture():
    """The fixture is in PEARL's real shape (docs/data.md); the defaults read it without a field map."""
    report, errors = PearlReport(), []
    records = list(load_pearl(FIXTURE, load_demo().catalogue, on_error=errors.append, report=report))
    assert [r.id for r in records] == ["pearl-fx1", "pearl-fx2", "pearl-fx3"]
    assert [r.split for r in records] == ["train"] * 3  # no split field: the file's name decides
    assert report.read == 9 and report.kept == 3
    assert report.empty_turns_removed == 3  # '', 'Recommender: ', 'Seeker:   '
    assert report.dropped == {"target not in catalogue": 1, "watched movie not in catalogue": 1, "no target title": 1,
                              "invalid": 3}
    assert report.dropped_fraction == 6 / 9
    assert [str(e) for e in errors] == [
        f"{FIXTURE}:7: field 'dialogue': expected a list of 'Seeker: ...' strings",
        f"{FIXTURE}:8: field 'dialogue[1]': must start with 'Seeker:' or 'Recommender:'",
        f"{FIXTURE}:9: field 'user_persona': missing",
    ]
    r = records[0]
    assert r.provenance == {"persona": "review", "target_attributes": "source"} and r.meta["user_id"] == "u1"
    assert r.persona.summary.startswith("Heat is a tense duel") and r.persona.summary.count("\n\n") == 2
    assert [w.title for w in r.persona.watched] == ["Heat (1995)", "Se7en (1995)", "Zodiac (2007)"]
    assert [w.text for w in r.persona.watched] == ["", "", ""]  # PEARL has no per-title review field
    assert r.target.item_id == "demo:inside-man-2006"
    assert r.target.attributes == ["crime", "thriller", "spike lee", "denzel washington", "clive owen", "jodie foster"]
    # gt_abstract: only the review part, and its sentence naming the title is dropped
    assert r.target.attribute_text == "A clever bank robbery turns into a hostage standoff. Smart and stylish."
    assert "Inside Man" not in r.persona.model_dump_json() + r.target.attribute_text + " ".join(r.target.attributes)
    assert [t.action for t in r.turns][-2:] == [Action.RECOMMEND, Action.ACCEPT]
    assert r.turns[-1].text == "That sounds great, I'll watch it tonight!"  # [EOD] removed
    assert r.outcome.accepted_item == "Inside Man (2006)"
    assert records[2].turns[1].titles == ["Ronin (1998)"]  # a catalogue title is marked too
    with pytest.raises(DataFormatError, match=r"pearl_sample.jsonl:7: field 'dialogue'"):
        list(load_pearl(FIXTURE, load_demo().catalogue))


def test_pearl_hub_files_give_splits(tmp_path):
    """The hub's shape: train.json / valid.json / test.json, each a JSON list (errors name the record's index)."""
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    for name, row in zip(("train", "valid", "test"), rows):
        (tmp_path / f"{name}.json").write_text(json.dumps([row, rows[6]]))
    errors = []
    records = list(load_pearl(tmp_path, load_demo().catalogue, on_error=errors.append))
    assert sorted((r.id, r.split) for r in records) == [("pearl-fx1", "train"), ("pearl-fx2", "valid"),
                                                        ("pearl-fx3", "test")]
    assert f"{tmp_path / 'valid.json'}:2: field 'dialogue'" in str(errors[2])
    (tmp_path / "test.json").write_text(json.dumps({"rows": rows}))
    with pytest.raises(DataFormatError, match=r"test.json: field '<json>': expected a list of records"):
        list(load_pearl(tmp_path, load_demo().catalogue))


OTHER_NAMES = {"id": "id", "persona": "persona_text", "watched_titles": "seen", "watched_reviews": "seen_reviews",
               "target_title": "target_movie_title", "target_abstract": "target_movie_abstract",
               "target_genres": "target_movie_genres", "target_director": "target_movie_director",
               "target_cast": "target_movie_cast", "dialogue": "turns"}


def test_pearl_field_map_reads_an_export_with_other_names(tmp_path):
    real = json.loads(FIXTURE.read_text().splitlines()[0])
    other = {"id": "x1", "turns": real["dialogue"], "persona_text": "I enjoy slow-burning crime stories.",
             "seen": real["seen_movie_titles"], "seen_reviews": ["A tense duel.", "Grim.", "Obsessive."],
             "target_movie_title": "Inside Man (2006)",
             "target_movie_abstract": "A heist. Inside Man keeps you guessing.",
             "target_movie_genres": ["Crime", "Thriller"], "target_movie_director": "Spike Lee",
             "target_movie_cast": ["Denzel Washington", "Clive Owen"], "split": "valid"}
    f = tmp_path / "export.jsonl"
    f.write_text(json.dumps(other) + "\n")
    with pytest.raises(DataFormatError, match=r"export.jsonl:1: field 'dialogue': missing"):
        list(load_pearl(f, load_demo().catalogue))
    [rec] = load_pearl(f, load_demo().catalogue, field_map=OTHER_NAMES)
    assert rec.id == "pearl-x1" and rec.split == "valid"
    assert rec.persona.summary == "I enjoy slow-burning crime stories."
    assert [(w.title, w.text) for w in rec.persona.watched] == [
        ("Heat (1995)", "A tense duel."), ("Se7en (1995)", "Grim."), ("Zodiac (2007)", "Obsessive.")]
    assert rec.target.attributes == ["crime", "thriller", "spike lee", "denzel washington", "clive owen"]
    assert rec.target.attribute_text == "A heist." and rec.outcome.accepted_item == "Inside Man (2006)"
    with pytest.raises(ValueError, match="unknown PEARL field-map key 'persona_field'"):
        list(load_pearl(f, load_demo().catalogue, field_map={"persona_field": "p"}))


@pytest.mark.parametrize("change, message", [
    ({"gt_cast": 3}, "field 'gt_cast': expected a list of strings, got int"),
    ({"seen_movie_titles": ["Heat (1995)", None]}, "field 'seen_movie_titles[1]': expected a string, got NoneType"),
    ({"gt_movie_title": ["Inside Man (2006)"]}, "field 'gt_movie_title': expected a string, got list"),
    ({"user_persona": "  "}, "field 'user_persona': empty"),
    ({"dialogue": ["Seeker: hi", 7]}, "field 'dialogue[1]': expected a string, got int"),
])
def test_pearl_bad_fields_are_named(tmp_path, change, message):
    row = {**json.loads(FIXTURE.read_text().splitlines()[0]), **change}
    f = tmp_path / "train.jsonl"
    f.write_text("not json\n" + json.dumps(row) + "\n")
    errors = []
    assert list(load_pearl(f, load_demo().catalogue, on_error=errors.append)) == []
    assert [str(e) for e in errors] == [f"{f}:1: field '<json>': Expecting value", f"{f}:2: {message}"]


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    paths = {"redial": shared_data / "redial", "inspired": shared_data / "inspired" / "dev.tsv",
             "iard": shared_data / "iard" / "iard_gold.json"}
    reports = {s: build_dataset(s, p, out / s, shared_data, progress=False) for s, p in paths.items()}
    return out, reports


def test_real_sources_build(built):
    out, reports = built
    assert reports["redial"]["records"] == {"train": 500, "valid": 100, "test": 300}
    assert reports["inspired"]["records"] == {"dev": 99}
    assert reports["iard"]["records"] == {"test": 77}
    assert all(r["skipped"] == 0 for r in reports.values())
    assert reports["redial"]["target_match_rate"] > 0.9
    stats = dataset_stats(out / "redial")
    assert stats["test"]["records"] == 300 and 0.8 < stats["test"]["accepted_rate"] <= 1.0
    import datasets

    ds = datasets.load_dataset("json", data_files={"test": str(out / "redial" / "test.jsonl")})["test"]
    assert ds.num_rows == 300 and set(ds.column_names) >= {"persona", "target", "turns", "outcome"}


def test_redial_record_known_answer(built):
    """redial-15875 (the first train line), checked by hand against the raw JSON."""
    out, _ = built
    rec = {r.id: r for r in read_records(out / "redial", "train")}["redial-15875"]
    assert rec.target.title.startswith("Ghostbusters") and rec.outcome.accepted_item == "Ghostbusters (1984)"
    assert [w.title for w in rec.persona.watched] == ["Bridesmaids (2011)", "Despicable Me 3 (2017)",
                                                       "How to Train Your Dragon (2010)"]
    assert rec.provenance == {"persona": "catalogue", "target_attributes": "catalogue"}
    assert rec.turns[0].role is Role.RECOMMENDER and rec.turns[0].text == "Hello"
    assert rec.turns[1].text == "hi how are u"  # two seeker messages merged
    assert rec.turns[6].text == "Okay, have you seen <movie_title>Ghostbusters (1984)</movie_title>?"
    assert rec.turns[6].action is Action.RECOMMEND
    assert rec.turns[-1].action is Action.ACCEPT and rec.turns[-1].role is Role.USER and len(rec.turns) == 8


def test_records_are_well_formed(built):
    out, _ = built
    for source in ("redial", "inspired", "iard"):
        for rec in read_records(out / source):
            roles = [t.role for t in rec.turns]
            assert all(a is not b for a, b in zip(roles, roles[1:])), rec.id  # merged: strict alternation
            if source == "redial":  # every @<id> movie mention became a marked title
                assert not re.search(r"@\d+", " ".join(t.text for t in rec.turns)), rec.id
            accepts = [t for t in rec.turns if t.action is Action.ACCEPT]
            if rec.outcome.accepted_item:
                assert rec.turns[-1].action is Action.ACCEPT or rec.turns[-1].role is Role.USER
                assert len(accepts) == 1 and accepts[0] is [t for t in rec.turns if t.role is Role.USER][-1]


def test_inspired_keeps_strategies_and_outcomes(built):
    out, _ = built
    recs = read_records(out / "inspired", "dev")
    strategies = {s for r in recs for t in r.turns for s in t.meta.get("strategies", [])}
    assert {"opinion_inquiry", "encouragement", "personal_opinion"} <= strategies
    rejected = [r for r in recs if r.meta["coarse_label"] == "reject_new"]
    assert len(rejected) == 14 and all(r.target is None and r.outcome.accepted_item is None for r in rejected)
    assert sum(r.meta["coarse_label"] == "accept_new" for r in recs) == 85
    assert any(r.meta.get("repaired") for r in recs)  # the broken movie_dict literal of dev.tsv


def test_iard_uses_gold_acts(built):
    out, _ = built
    recs = read_records(out / "iard", "test")
    assert all("intents" in t.meta for r in recs for t in r.turns)
    assert all(t.action is Action.RECOMMEND for r in recs for t in r.turns if t.meta["intents"] == ["REC-S"])


def test_zero_target_leaks_in_every_source(built):
    out, _ = built
    checked = 0
    for source in ("redial", "inspired", "iard"):
        for rec in read_records(out / source):
            if rec.target is None:
                continue
            view = build_user_view("e", rec.episode_spec())  # raises TargetLeakError on a leak
            assert find_target_leak(view.model_dump_json(exclude={"episode_id"}), rec.target) is None
            checked += 1
    assert checked > 800


def test_bad_input_names_file_line_field_and_keeps_old_output(shared_data, tmp_path):
    src = tmp_path / "redial"
    src.mkdir()
    lines = (shared_data / "redial" / "test_data.jsonl").read_text().splitlines()[:5]
    broken = json.loads(lines[2])
    del broken["messages"]
    lines[2] = json.dumps(broken)
    lines[3] = lines[3][:50]
    (src / "test_data.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier build")
    with pytest.raises(DataFormatError, match=r"test_data.jsonl:3: field 'messages': missing"):
        build_dataset("redial", src / "test_data.jsonl", out, shared_data, progress=False)
    assert (out / "keep.txt").read_text() == "earlier build" and not list(tmp_path.glob(".out-*"))
    report = build_dataset("redial", src / "test_data.jsonl", out, shared_data, skip_invalid=True, progress=False)
    assert report["records"] == {"test": 3} and report["skipped"] == 2
    assert "test_data.jsonl:4: field '<json>'" in report["skipped_reasons"][1]
    assert len(read_records(out, "test")) == 3 and len(read_catalogue(out)) > 10000


def test_undecodable_lines_short_rows_and_empty_files_are_named(shared_data, tmp_path):
    """Invalid UTF-8 in a ReDial line or an INSPIRED row, and an INSPIRED row with too few
    columns, name file, line and field and are skipped alone with --skip-invalid; an empty split
    file is an error, not a build with the split silently missing."""
    from interplay.data.inspired import load_inspired

    src = tmp_path / "redial"
    src.mkdir()
    lines = (shared_data / "redial" / "test_data.jsonl").read_bytes().splitlines()[:4]
    lines[1] = lines[1][:40] + b"\xff\xfe" + lines[1][40:]
    (src / "test_data.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataFormatError, match=r"test_data.jsonl:2: field '<encoding>': invalid UTF-8 at byte 40"):
        build_dataset("redial", src, tmp_path / "out", shared_data, progress=False)
    report = build_dataset("redial", src, tmp_path / "out", shared_data, skip_invalid=True, progress=False)
    assert report["records"] == {"test": 3} and report["skipped"] == 1
    (src / "train_data.jsonl").write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"train_data.jsonl: field '<file>': empty"):
        build_dataset("redial", src, tmp_path / "out2", shared_data, skip_invalid=True, progress=False)
    assert not (tmp_path / "out2").exists()

    rows = (shared_data / "inspired" / "dev.tsv").read_bytes().split(b"\n")
    first = rows[1].split(b"\t")[0]  # the first dialogue's id
    rows[2] = b"\t".join(rows[2].split(b"\t")[:3])  # a row of the first dialogue cut to 3 columns
    later = next(i for i, r in enumerate(rows[1:], start=1) if r and not r.startswith(first))
    cols = rows[later].split(b"\t")
    cols[4] = cols[4] + b"\xff"  # the text of the second dialogue's first row
    rows[later] = b"\t".join(cols)
    (tmp_path / "dev.tsv").write_bytes(b"\n".join(rows))
    errors: list = []
    records = list(load_inspired(tmp_path / "dev.tsv", load_demo().catalogue, on_error=errors.append))
    assert [str(e).split("dev.tsv")[1] for e in errors] == [
        ":3: field 'text': missing: the row has 3 of 19 columns", f":{later + 1}: field 'text': invalid UTF-8"]
    assert len(records) == 97  # the other dialogues, whole
    (tmp_path / "empty.tsv").write_text(rows[0].decode() + "\n")
    with pytest.raises(DataFormatError, match="empty"):
        list(load_inspired(tmp_path / "empty.tsv", load_demo().catalogue))


def test_cli_build_stats_and_simulate_on_records(shared_data, tmp_path):
    cli = [sys.executable, "-m", "interplay.cli"]
    run = lambda *a: subprocess.run([*cli, *map(str, a)], env=subprocess_env(), cwd=ROOT, capture_output=True,  # noqa: E731
                                    text=True, timeout=600)
    built = run("data", "build", "--source", "iard", "--path", shared_data / "iard", "--out", tmp_path / "iard",
                "--catalogue", shared_data, "--no-progress")
    assert built.returncode == 0, built.stdout + built.stderr
    stats = run("data", "stats", tmp_path / "iard")
    assert stats.returncode == 0 and "77" in stats.stdout and "recommender / recommend" in stats.stdout
    sim = run("simulate", "--user", "rule", "--recommender", "rule", "--data", tmp_path / "iard", "--split", "test",
              "--episodes", 10, "--out", tmp_path / "run", "--no-progress")
    assert sim.returncode == 0, sim.stdout + sim.stderr
    from interplay.episode_log import read_episodes

    episodes = list(read_episodes(tmp_path / "run" / "episodes.jsonl"))
    assert len(episodes) == 10 and all(e.source == "iard" and e.target.item_id.startswith("ml:") for e in episodes)
    records = read_records(tmp_path / "iard", "test")
    unusable = [r for r in records if r.target is None or not r.target.attributes
                or not r.meta.get("target_in_catalogue", True)]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["records_left_out"] == len(unusable) > 0  # reported, not silently dropped
    missing = run("data", "build", "--source", "redial", "--path", tmp_path / "nope", "--out", tmp_path / "x",
                  "--catalogue", shared_data, "--no-progress")
    assert missing.returncode == 2 and "nope" in missing.stdout


def redial_line(conv_id: str, greeting: str = "hi") -> str:
    """A minimal conversation in ReDial's original schema: the seeker likes Heat, accepts Ronin."""
    return json.dumps({
        "conversationId": conv_id, "initiatorWorkerId": 1, "respondentWorkerId": 2,
        "messages": [{"text": f"{greeting}, I liked @111", "senderWorkerId": 1, "messageId": 1},
                     {"text": "then try @222", "senderWorkerId": 2, "messageId": 2, "turn_id": 1},
                     {"text": "great, thanks", "senderWorkerId": 1, "messageId": 3}],
        "movieMentions": {"111": "Heat (1995)", "222": "Ronin  (1998)"},
        "initiatorQuestions": {"111": {"suggested": 0, "seen": 1, "liked": 1},
                               "222": {"suggested": 1, "seen": 0, "liked": 1}},
        "respondentQuestions": {}}) + "\n"


def test_redial_form_verdicts_by_id_known_answer(two_redial_sources):
    """Every item the seeker's form marks as suggested is a verdict, placed at the recommender turn
    that first names it in the whole dialogue (after the acceptance too), with its slice by
    provenance; the dialogue spells the target 'Ronin (1999)' (a year off, as ReDial does), the
    catalogue 'Ronin (1998)': one id. Liked 2 is kept as 'did not say'. A title the catalogue
    lacks gets the source's id."""
    from interplay.catalogue import Catalogue
    from interplay.data.movielens import load_movielens_catalogue
    from interplay.data.redial import parse_conversation

    catalogue = load_movielens_catalogue(two_redial_sources / "ml")
    assert isinstance(catalogue, Catalogue)
    obj = {"conversationId": "9", "initiatorWorkerId": 1, "respondentWorkerId": 2,
           "messages": [{"text": "hi, I liked @111", "senderWorkerId": 1},
                        {"text": "how about @333?", "senderWorkerId": 2},
                        {"text": "seen it, not for me", "senderWorkerId": 1},
                        {"text": "then try @222", "senderWorkerId": 2},
                        {"text": "great, thanks", "senderWorkerId": 1},
                        {"text": "also @444 and @111", "senderWorkerId": 2},
                        {"text": "maybe", "senderWorkerId": 1}],
           "movieMentions": {"111": "Heat (1995)", "222": "Ronin  (1999)", "333": "Se7en (1995)",
                             "444": "Nowhere Film (2001)"},
           "initiatorQuestions": {"111": {"suggested": 1, "seen": 1, "liked": 1},
                                  "222": {"suggested": 1, "seen": 0, "liked": 1},
                                  "333": {"suggested": 1, "seen": 1, "liked": 0},
                                  "444": {"suggested": 1, "seen": 2, "liked": 2}}}
    rec = parse_conversation(obj, Path("x.jsonl"), 1, "test", catalogue)
    assert rec.target.item_id == "ml:2" and rec.item_id("Ronin (1999)") == "ml:2"
    assert rec.outcome.accepted_item == "Ronin (1999)" and len(rec.turns) == 5 and len(rec.tail) == 2
    assert rec.item_id("Nowhere Film (2001)") == "redial:444" and not rec.items["Nowhere Film (2001)"].in_catalogue
    got = [(d.item_id, d.turn, d.accept, d.seen, d.slice, d.origin) for d in rec.decisions]
    assert got == [("ml:3", 1, 0, 1, "other-seen", "form"), ("ml:2", 3, 1, 0, "target", "form"),
                   ("ml:1", 5, 1, 1, "other-seen", "form"),  # Heat: named by the seeker first, judged where suggested
                   ("redial:444", 5, None, None, "other-seen-unknown", "form")]


@pytest.fixture
def two_redial_sources(tmp_path):
    """Two ReDial folders and a three-movie catalogue: A has train/valid/test, B (later) train/test."""
    (tmp_path / "ml" / "movielens-small").mkdir(parents=True)
    (tmp_path / "ml" / "movielens-small" / "movies.csv").write_text(
        "movieId,title,genres\n1,Heat (1995),Action|Crime\n2,Ronin (1998),Action|Crime\n3,Se7en (1995),Thriller\n")
    files = {"a/train_data.jsonl": ["1", "2", "3"], "a/valid_data.jsonl": ["6"], "a/test_data.jsonl": ["4"],
             "b/train_data.jsonl": ["2", "4", "5", "6", "5"], "b/test_data.jsonl": ["3"]}
    for name, ids in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        greeting = "hello" if name.startswith("b/") else "hi"
        (tmp_path / name).write_text("".join(redial_line(i, greeting) for i in ids))
    return tmp_path


def test_build_combines_sources_and_drops_duplicate_ids(two_redial_sources):
    """First source's copy kept; a copy held out (test, valid) anywhere wins over a train copy."""
    root = two_redial_sources
    report = build_dataset("redial", [root / "a", root / "b"], root / "out", root / "ml", progress=False)
    assert report["read"] == {str(root / "a"): {"train": 3, "valid": 1, "test": 1},
                              str(root / "b"): {"train": 5, "test": 1}}
    assert report["records"] == {"train": 3, "valid": 1, "test": 2} and report["duplicates_dropped"] == 5
    assert sorted((d["id"], d["dropped"], d["kept"]) for d in report["duplicates"]) == [
        ("redial-2", f"{root / 'b'} (train)", f"{root / 'a'} (train)"),  # the first source's copy
        ("redial-3", f"{root / 'a'} (train)", f"{root / 'b'} (test)"),  # test stays held out, even from a later source
        ("redial-4", f"{root / 'b'} (train)", f"{root / 'a'} (test)"),  # never moved into train
        ("redial-5", f"{root / 'b'} (train)", f"{root / 'b'} (train)"),  # twice in one file
        ("redial-6", f"{root / 'b'} (train)", f"{root / 'a'} (valid)"),
    ]
    greeting = {r.id: (r.split, r.turns[0].text.split(",")[0]) for r in read_records(root / "out")}
    assert greeting == {"redial-1": ("train", "hi"), "redial-2": ("train", "hi"), "redial-5": ("train", "hello"),
                        "redial-6": ("valid", "hi"), "redial-4": ("test", "hi"), "redial-3": ("test", "hello")}
    assert json.loads((root / "out" / "build.json").read_text())["duplicates_dropped"] == 5
    # a folder holding only some split files is read as it is; one holding none is an error
    assert build_dataset("redial", root / "b", root / "out_b", root / "ml", progress=False)["records"] == {
        "train": 4, "test": 1}
    (root / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty: field '<file>': no split file"):
        build_dataset("redial", [root / "a", root / "empty"], root / "out_c", root / "ml", progress=False)


def test_cli_build_takes_several_paths_and_reports_duplicates(two_redial_sources):
    root = two_redial_sources
    done = subprocess.run([sys.executable, "-m", "interplay.cli", "data", "build", "--source", "redial",
                           "--path", str(root / "a"), "--path", str(root / "b"), "--out", str(root / "out"),
                           "--catalogue", str(root / "ml"), "--no-progress"],
                          env=subprocess_env(COLUMNS="200"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "duplicates dropped: 5" in done.stdout and "{'train': 3, 'valid': 1, 'test': 2}" in done.stdout


def test_redial_with_redial_more_known_answer(shared_data, tmp_path):
    """redial-more (train only, extra fields) shares 50 conversation ids with redial: 43 train, 7 valid, 0 test."""
    ids = {}
    for folder, split in [("redial", "train"), ("redial", "valid"), ("redial", "test"), ("redial-more", "train")]:
        lines = (shared_data / folder / f"{split}_data.jsonl").read_text().splitlines()
        ids[folder, split] = {json.loads(line)["conversationId"] for line in lines if line.strip()}
    more = ids["redial-more", "train"]
    assert len(more) == 1000 and [len(more & ids["redial", s]) for s in ("train", "valid", "test")] == [43, 7, 0]
    paths = [shared_data / "redial", shared_data / "redial-more"]
    report = build_dataset("redial", paths, tmp_path / "out", shared_data, progress=False)
    assert report["read"] == {str(paths[0]): {"train": 500, "valid": 100, "test": 300}, str(paths[1]): {"train": 1000}}
    assert report["records"] == {"train": 1450, "valid": 100, "test": 300} and report["skipped"] == 0
    assert report["duplicates_dropped"] == 50
    assert all(d["dropped"] == f"{paths[1]} (train)" for d in report["duplicates"])  # redial's copies kept
    assert Counter(d["kept"] for d in report["duplicates"]) == {f"{paths[0]} (train)": 43, f"{paths[0]} (valid)": 7}
    records = read_records(tmp_path / "out")
    assert len({r.id for r in records}) == len(records) == 1850
    test_ids = {r.meta["conversation_id"] for r in records if r.split == "test"}
    assert test_ids == ids["redial", "test"]


@pytest.mark.parametrize("change, message", [
    (lambda o: o.update(conversationId=[1]), "field 'conversationId': expected str or int, got list"),
    (lambda o: o["messages"][1].pop("text"), "field 'messages[1].text': missing"),
    (lambda o: o["messages"].append("hi"), "field 'messages[3]': expected an object, got str"),
    (lambda o: o["movieMentions"].update({"222": 5}), "field 'movieMentions.222': expected a title, got int"),
    (lambda o: o.update(initiatorQuestions=["x"]), "field 'initiatorQuestions': expected an object, got list"),
])
def test_redial_bad_fields_are_named(tmp_path, change, message):
    from interplay.data.redial import load_redial

    obj = json.loads(redial_line("9"))
    change(obj)
    f = tmp_path / "test_data.jsonl"
    f.write_text(redial_line("8") + json.dumps(obj) + "\n")
    errors = []
    assert len(list(load_redial(f, load_demo().catalogue, on_error=errors.append))) == 1
    assert [str(e) for e in errors] == [f"{f}:2: {message}"]


DIALOGUE = [(Role.USER, "Hi! Can you recommend a scary movie?", []),
            (Role.RECOMMENDER, "Sure, have you seen <movie_title>It (2017)</movie_title>?", ["It (2017)"]),
            (Role.USER, "No, but I will watch it tonight, thanks!", [])]


def test_llm_annotator_falls_back_to_rules_on_unusable_answers(tiny_model_dir):
    from interplay.backends.transformers_backend import TransformersBackend
    from interplay.data.annotate import LLMAnnotator, RuleAnnotator

    backend = TransformersBackend(str(tiny_model_dir), dtype="float32")
    labels = LLMAnnotator(backend, backend.tokenizer).annotate_dialogue(DIALOGUE)
    rules = RuleAnnotator().annotate_dialogue(DIALOGUE)
    assert [a for a, _ in rules] == [Action.DISCLOSE_GOAL, Action.RECOMMEND, Action.ACCEPT]
    # a random-weight model names no action: every label is the rules' and says so
    assert labels == [(a, "llm-fallback") for a, _ in rules]


@pytest.mark.slow
def test_llm_annotator_with_the_default_model():
    from interplay.data.annotate import make_annotator
    from interplay.protocol import ROLE_ACTIONS

    annotator = make_annotator("llm")
    labels = annotator.annotate_dialogue(DIALOGUE)
    assert all(a in ROLE_ACTIONS[role] for (role, _, _), (a, _) in zip(DIALOGUE, labels))
    assert any(src == "llm" for _, src in labels)  # the model named an allowed action at least once
    prompt = annotator.prompt(Role.RECOMMENDER, "What genre?", "Hi")
    assert "recommend" in prompt and "accept" not in prompt.split("Which action")[1]


def test_docs_source_example_builds_by_name_and_by_path(shared_data, tmp_path, monkeypatch):
    """docs/data.md's source, run as written: registered by name, named as module:function, its
    malformed line skipped with file and line; an unknown source fails before anything is written."""
    import re

    from interplay.data.sources import source_names, unregister_source

    text = (ROOT / "docs" / "data.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "register_source" in b)
    rows = [{"id": 1, "split": "train", "movies": ["Heat (1995)"],
             "turns": [["user", "I want a heist film"], ["recommender", "Have you seen Heat (1995)?"],
                       ["user", "Yes, I'll watch it!"]], "accepted": "Heat (1995)"},
            {"id": 2, "split": "test", "movies": [], "turns": [["user", "hello"], ["someone", "?"]]},
            {"id": 3, "split": "test", "movies": ["Toy Story (1995)"],
             "turns": [["user", "something for kids"], ["recommender", "Toy Story (1995) is great"],
                       ["user", "not that one"]]}]
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "my_chats.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        by_path = build_dataset("my_chats:load_chats", src, tmp_path / "by-path", shared_data, skip_invalid=True,
                                progress=False)  # importing the module registers "chats" too
        assert "chats" in source_names()
        by_name = build_dataset("chats", src, tmp_path / "by-name", shared_data, skip_invalid=True, progress=False)
    finally:
        unregister_source("chats")
        sys.modules.pop("my_chats", None)
    for report in (by_path, by_name):
        assert report["records"] == {"train": 1, "test": 1}
        assert report["skipped"] == 1 and f"{src}:2: field 'turns'" in report["skipped_reasons"][0]
    (train,) = read_records(tmp_path / "by-name", "train")
    assert train.id == "chats:1" and train.outcome.accepted_item == "Heat (1995)"
    assert train.turns[1].titles == ["Heat (1995)"] and train.turns[-1].action is Action.ACCEPT
    assert train.target is not None and train.target.title == "Heat (1995)"
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        build_dataset("nope", src, tmp_path / "nope", shared_data, progress=False)
    assert not (tmp_path / "nope").exists() and not list(tmp_path.glob(".nope-*"))
