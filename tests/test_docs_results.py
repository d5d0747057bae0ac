"""Figures as data: docs tables rendered from docs/results/*.json, and a check that fails when a
docs table and its result file disagree (interplay.results_docs, ``interplay docs render``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interplay.results_docs import ResultsError, ResultTable, checkpoint_hash, load_result, render_docs, render_table

ROOT = Path(__file__).resolve().parent.parent

SMALL = {
    "title": "Decisions on ReDial test",
    "command": "interplay evaluate fidelity --data data/redial --split test",
    "data": "data/redial",
    "split": "test",
    "source": "runs/fidelity-redial-test/metrics.json",
    "measured": "2024-05-01",
    "columns": [
        {"key": "agent", "header": "agent", "format": "s"},
        {"key": "bacc", "header": "bal. acc. [CI]", "format": ".2f"},
        {"key": "kappa", "header": "kappa", "format": ".3f"},
        {"key": "n", "header": "records", "format": "d"},
        {"key": "checkpoint", "header": "checkpoint"},
        {"key": "threshold", "header": "threshold", "format": ".2f"},
    ],
    "rows": [
        {"agent": "rule", "bacc": {"value": 0.7412, "ci95": [0.6651, 0.8049], "n": 127}, "kappa": 0.2149, "n": 127,
         "checkpoint": "-", "threshold": None},
        {"agent": "llm|lora", "bacc": {"value": 0.5, "ci95": None, "n": None}, "kappa": None, "n": 127.0,
         "checkpoint": "sha256:0123456789abcdef", "threshold": 0.375},
    ],
    "notes": ["rule: its thresholds were tuned on this split (given)."],
}

EXPECTED = """\
| agent | bal. acc. [CI] | kappa | records | checkpoint | threshold |
| --- | --- | --- | --- | --- | --- |
| rule | 0.74 [0.67, 0.80] | 0.215 | 127 | - | - |
| llm\\|lora | 0.50 | - | 127 | sha256:0123456789abcdef | 0.38 |

Source: `docs/results/small.json` — command: `interplay evaluate fidelity --data data/redial --split test`, \
measured 2024-05-01

- rule: its thresholds were tuned on this split (given).
"""


def test_render_table_known_answer():
    assert render_table(ResultTable.model_validate(SMALL), "small") == EXPECTED


def test_render_table_appends_checkpoint_and_threshold_columns():
    spec = {**SMALL, "columns": SMALL["columns"][:2], "notes": []}
    text = render_table(ResultTable.model_validate(spec), "small")
    assert text.splitlines()[0] == "| agent | bal. acc. [CI] | checkpoint | threshold |"
    assert text.splitlines()[3] == "| llm\\|lora | 0.50 | sha256:0123456789abcdef | 0.375 |"
    assert text.endswith("measured 2024-05-01\n")


def test_a_checkpoint_that_was_not_kept_says_so_and_a_weightless_agent_shows_a_dash():
    rows = [{**SMALL["rows"][1], "checkpoint": None}, {**SMALL["rows"][0], "checkpoint": "-"}]
    spec = {**SMALL, "columns": SMALL["columns"][:1], "rows": rows, "notes": []}
    lines = render_table(ResultTable.model_validate(spec), "small").splitlines()
    assert lines[2] == "| llm\\|lora | not kept | 0.375 |"
    assert lines[3] == "| rule | - | - |"


def _project(tmp_path: Path) -> tuple[Path, Path]:
    docs, results = tmp_path / "docs", tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    (results / "small.json").write_text(json.dumps(SMALL, indent=2))
    (results / "other.json").write_text(json.dumps({**SMALL, "title": "other"}, indent=2))
    (docs / "a.md").write_text("# A\n\nText.\n\n<!-- results: small -->\n<!-- /results -->\n\nMore.\n\n"
                               "<!-- results: other -->\nold\n<!-- /results -->\n")
    (docs / "b.md").write_text("# B\n\n```\n<!-- results: nowhere -->\n```\n")  # fenced: not a block
    return docs, results


def test_check_reports_exactly_the_edited_block(tmp_path):
    docs, results = _project(tmp_path)
    first = render_docs(docs, results)
    assert [(b.doc.name, b.line, b.name) for b in first] == [("a.md", 5, "small"), ("a.md", 10, "other")]
    text = (docs / "a.md").read_text()
    assert EXPECTED in text and text.startswith("# A\n\nText.\n\n<!-- results: small -->\n") and "\nold\n" not in text
    assert render_docs(docs, results, check=True) == []
    assert render_docs(docs, results) == []  # idempotent

    # a number edited in the markdown
    (docs / "a.md").write_text(text.replace("0.74 [0.67, 0.80]", "0.75 [0.67, 0.80]", 1))
    stale = render_docs(docs, results, check=True)
    assert [(b.name, b.line) for b in stale] == [("small", 5)]
    assert "0.75 [0.67, 0.80]" in (docs / "a.md").read_text()  # check writes nothing
    render_docs(docs, results)
    assert (docs / "a.md").read_text() == text

    # a number edited in the result file
    other = json.loads((results / "other.json").read_text())
    other["rows"][0]["kappa"] = 0.3
    (results / "other.json").write_text(json.dumps(other))
    stale = render_docs(docs, results, check=True)
    assert [(b.name, b.doc.name) for b in stale] == [("other", "a.md")]


def test_marker_naming_a_missing_file_names_doc_and_line(tmp_path):
    docs, results = _project(tmp_path)
    (docs / "c.md").write_text("x\n<!-- results: missing -->\n<!-- /results -->\n")
    with pytest.raises(ResultsError, match=r"c\.md:2: no result file .*missing\.json"):
        render_docs(docs, results, check=True)


def test_unclosed_block_is_an_error(tmp_path):
    docs, results = _project(tmp_path)
    (docs / "c.md").write_text("x\n\n<!-- results: small -->\n")
    with pytest.raises(ResultsError, match=r"c\.md:3: .*never closed"):
        render_docs(docs, results, check=True)


def test_row_without_checkpoint_names_file_and_field(tmp_path):
    bad = json.loads(json.dumps(SMALL))
    del bad["rows"][1]["checkpoint"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ResultsError, match=r"bad\.json: rows: rows\.1\.checkpoint: missing"):
        load_result(path)


def test_unknown_field_and_unrenderable_cell_are_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**SMALL, "measured_by": "me"}))
    with pytest.raises(ResultsError, match=r"bad\.json: measured_by: Extra inputs are not permitted"):
        load_result(path)
    bad = json.loads(json.dumps(SMALL))
    bad["rows"][0]["n"] = 1.5  # not an integer, column format "d"
    path.write_text(json.dumps(bad))
    with pytest.raises(ResultsError, match=r"bad\.json: .*rows\.0\.n: cannot render"):
        load_result(path)


def test_repository_docs_match_their_result_files():
    """Fails when a table in docs/ or README.md and its docs/results/*.json disagree:
    run `interplay docs render` after changing a result file, never edit a rendered table by hand."""
    stale = render_docs(ROOT / "docs", ROOT / "docs" / "results", check=True, readme=ROOT / "README.md")
    assert stale == [], "stale results blocks (run `interplay docs render`): " + ", ".join(map(str, stale))


def _checkpoint(folder: Path, weights: bytes) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text('{"vocab": {}}')
    return folder


def test_checkpoint_hash_depends_on_content_only(tmp_path):
    a = _checkpoint(tmp_path / "a", b"\x00\x01weights")
    b = _checkpoint(tmp_path / "b", b"\x00\x01weights")
    h = checkpoint_hash(a)
    assert h.startswith("sha256:") and len(h) == len("sha256:") + 16
    assert checkpoint_hash(b) == h
    (b / "trainer_state.json").write_text("{}")  # training state is not the model
    (b / "checkpoint-10").mkdir()
    (b / "checkpoint-10" / "optimizer.pt").write_bytes(b"state")
    assert checkpoint_hash(b) == h
    (b / "model.safetensors").write_bytes(b"\x00\x02weights")  # one byte changed
    assert checkpoint_hash(b) != h
    (a / "config.json").rename(a / "config2.json")  # same bytes, another name
    assert checkpoint_hash(a) != h


def test_cli_check_exits_1_listing_stale_blocks(tmp_path):
    from typer.testing import CliRunner

    from interplay.cli import app

    docs, results = _project(tmp_path)
    args = ["docs", "render", "--docs", str(docs), "--results", str(results), "--readme", str(tmp_path / "none.md")]
    res = CliRunner().invoke(app, [*args, "--check"])
    assert res.exit_code == 1 and "a.md:5 (small)" in res.output and "a.md:10 (other)" in res.output
    assert CliRunner().invoke(app, args).exit_code == 0
    res = CliRunner().invoke(app, [*args, "--check"])
    assert res.exit_code == 0, res.output


def test_verdict_table_counts_per_slice_and_refuses_an_unknown_split():
    from interplay.data.verdict_results import verdict_table

    stats = {"test": {"records": 3, "items": {"distinct": 9, "unmatched": 2},
                      "decisions": {"target": {"accept": 2, "reject": 0, "did_not_say": 0},
                                    "other-seen": {"accept": 1, "reject": 3, "did_not_say": 4}, "unplaced": 5}}}
    table = verdict_table("data/x", stats, "interplay data stats data/x --results-json r.json")
    by = {r["slice"]: r for r in table.rows}
    assert (by["other-seen"]["judged"], by["other-seen"]["did_not_say"]) == (4, 4)
    assert by["other-unseen"]["judged"] == 0  # every slice is listed, also an empty one
    assert (by["all judged"]["accept"], by["all judged"]["reject"], by["all judged"]["judged"]) == (3, 3, 6)
    assert by["all judged"]["did_not_say"] == 4
    assert "5 verdicts on items no recommender turn names" in table.notes[0]
    with pytest.raises(ValueError, match="no split valid"):
        verdict_table("data/x", stats, "cmd", splits=["valid"])
