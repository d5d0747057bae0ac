"""Interplay Studio in a real browser: Playwright drives Debian's Chromium (``make browser``)
against the real app served by uvicorn on loopback. With ``INTERPLAY_SCREENSHOTS=DIR`` the
tests save a screenshot of each page there (``docs/img`` for docs/studio.md)."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from interplay.studio.app import create_app
from interplay.studio.live_server import LiveServer
from interplay.studio.sample_runs import play_local_run
from interplay.studio.study import CRITERIA, Study, create_study

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SHOTS = os.environ.get("INTERPLAY_SCREENSHOTS")
#: the operator's token of the test studios (a real studio prints a random one)
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def chromium_executable() -> str | None:
    """Debian's Chromium (or ``INTERPLAY_CHROMIUM``), or None."""
    for candidate in (os.environ.get("INTERPLAY_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no Chromium: install Debian's package with `make browser` (or set INTERPLAY_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """Two small real runs (rule user vs the yes-sayer rule:0, same records), a study of them with
    two judges, and the app serving all of it."""
    root = tmp_path_factory.mktemp("studio")
    play_local_run(root / "runs" / "rule", user="rule", recommender="rule", episodes=4, max_turns=10)
    play_local_run(root / "runs" / "yes-sayer", user="rule:0", recommender="rule", episodes=4, max_turns=10)
    study_path = root / "studies" / "rule-vs-yes.sqlite"
    study_path.parent.mkdir()
    create_study(study_path, root / "runs" / "rule", root / "runs" / "yes-sayer", judges=["ana", "ben"], seed=3,
                 title="Rule user vs yes-sayer")
    app = create_app([root / "runs"], [study_path], data=["demo"], talk_out=root / "runs" / "talk",
                     admin_token=ADMIN_TOKEN)
    with LiveServer(app) as server:
        yield {"url": server.url, "root": root, "study": study_path, "app": app}


def new_page(browser):
    """A page in a fresh browser context (its own cookies), recording any dialog a script opens."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    return pg


def log_in(page, url: str) -> None:
    """The operator's first visit: the link with ``?token=`` sets the cookie and drops the token."""
    page.goto(f"{url}/?token={ADMIN_TOKEN}")
    assert "token=" not in page.url and page.locator("#runs").count() == 1


@pytest.fixture
def page(browser):
    pg = new_page(browser)
    yield pg
    pg.context.close()


@pytest.fixture
def admin_page(browser, studio):
    pg = new_page(browser)
    log_in(pg, studio["url"])
    yield pg
    pg.context.close()


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"studio-{name}.png"), full_page=True)


def test_open_a_run_filter_its_episodes_and_read_a_transcript(admin_page, studio):
    page = admin_page
    page.goto(studio["url"] + "/")
    assert page.locator("#runs").get_by_role("link", name="runs/rule", exact=True).is_visible()
    shot(page, "runs")
    page.get_by_role("link", name="runs/rule", exact=True).click()
    rows = page.locator("#episodes tbody tr")
    assert rows.count() == 4
    assert "termination" in page.locator("#summary").inner_text()
    # filter: only accepted episodes, then a text query no episode contains
    page.select_option("select[name=termination]", "accepted")
    page.get_by_role("button", name="Filter").click()
    accepted = page.locator("#episodes tbody tr")
    episodes = [json.loads(line) for line in (studio["root"] / "runs" / "rule" / "episodes.jsonl").read_text().splitlines()]
    assert accepted.count() == sum(e["termination"] == "accepted" for e in episodes) > 0
    page.fill("input[name=q]", "no episode says this")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("#episodes tbody tr").count() == 0
    page.get_by_role("link", name="clear").click()
    shot(page, "run")
    first = episodes[0]
    page.get_by_role("link", name=first["episode_id"]).click()
    turns = page.locator("#transcript .turn")
    assert turns.count() == first["num_turns"]
    assert first["termination"] in page.locator("#outcome").inner_text()
    assert page.locator("#transcript .turn .action").first.inner_text() == f"<{first['turns'][0]['action']}>"
    page.locator("#show-raw").click()
    assert page.locator(".raw").count() == first["num_turns"]  # rule agents: a note that there is none
    shot(page, "transcript")
    # a recommended title links to the catalogue item's attributes
    rec = next(t for t in first["turns"] if t["action"] == "recommend")
    page.locator("#transcript a.title", has_text=rec["titles"][0]).first.click()
    assert page.locator("#item-title").inner_text() == rec["titles"][0]
    assert page.locator("#item-attributes").inner_text().startswith("crime")  # Heat (1995) in the demo catalogue
    shot(page, "item")


def _choose(side_of_a: str, pick: str) -> str:
    """The side (left/right) on which the judge sees system ``pick`` (A or B)."""
    other = "right" if side_of_a == "left" else "left"
    return side_of_a if pick == "A" else other


def _hand_binomial_p(k: int, n: int) -> float:
    """Two-sided exact binomial p at 0.5, summed by hand (the distribution is symmetric)."""
    tail = sum(math.comb(n, i) for i in range(max(k, n - k), n + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def test_two_judges_judge_every_pair_and_the_export_matches_hand_computed_results(browser, admin_page, studio):
    study = Study.open(studio["study"])
    # ana prefers A (the rule user) on every criterion; ben too, except flow and consistency
    plan = {"ana": {c.key: "A" for c in CRITERIA},
            "ben": {c.key: ("B" if c.key in ("flow", "consistency") else "A") for c in CRITERIA}}
    for judge in study.judges():
        page = new_page(browser)  # each judge in their own browser
        page.goto(f"{studio['url']}/judge/{judge.token}")
        assert "0 of 4 pairs judged" in page.locator("#judge-progress").inner_text()
        if judge.name == "ana":
            shot(page, "judge-home")
        page.locator("#next-pair").click()
        pairs = {p.pair_id: p for p in study.pairs_for(judge.token)}
        for n in range(4):
            pair_id = page.url.rsplit("/", 1)[1]
            pair = pairs[pair_id]
            side_of_a = "left" if pair.left.user_spec == "rule" else "right"
            assert page.locator("#profile").count() == 1, page.content()[:3000]
            assert page.locator("#profile").inner_text().count(pair.left.persona.summary) == 1
            for c in CRITERIA:
                page.locator(f"#{c.key}-{_choose(side_of_a, plan[judge.name][c.key])}").check()
            if judge.name == "ana" and n == 0:
                shot(page, "judge-pair")
                with page.expect_navigation():
                    page.locator("#submit-judgement").dblclick()  # a double click counts once
            else:
                with page.expect_navigation():
                    page.locator("#submit-judgement").click()
        assert page.locator("#all-done").is_visible()
        page.context.close()
    rows = study.judgements()
    assert len(rows) == 2 * 4 * len(CRITERIA)  # nothing counted twice
    assert {(r["judge"], r["pair_id"]) for r in rows} == {(j.name, p) for j in study.judges() for p in pairs}

    page = admin_page
    page.goto(f"{studio['url']}/studies/rule-vs-yes")
    shot(page, "study-results")
    with page.expect_download() as download:
        page.locator("#export-results-json").click()
    exported = json.loads(Path(download.value.path()).read_text())
    by_key = {r["key"]: r for r in exported["criteria"]}
    # one verdict per pair (the majority of its judges), the binomial test over pairs:
    # user control: both judges pick A on all 4 pairs -> 4 of 4 pairs; p = 2 / 2^4, not significant
    assert (by_key["user_control"]["wins_a"], by_key["user_control"]["n"]) == (4, 4)
    assert by_key["user_control"]["win_ratio_a"] == 1.0
    assert by_key["user_control"]["p_value"] == pytest.approx(_hand_binomial_p(4, 4)) == pytest.approx(2 / 16)
    # flow: ana A, ben B on every pair -> no majority: 4 tied pairs, nothing to test
    assert (by_key["flow"]["wins_a"], by_key["flow"]["wins_b"], by_key["flow"]["ties"], by_key["flow"]["n"]) == (0, 0, 4, 0)
    assert by_key["flow"]["win_ratio_a"] is None and by_key["flow"]["p_value"] is None
    # Krippendorff's alpha on flow: 4 units each (A, B): o_AB = o_BA = 4, n = 8, n_A = n_B = 4;
    # D_o = 8/8 = 1, D_e = 2*4*4/(8*7) = 4/7 -> alpha = 1 - 7/4 = -0.75
    assert by_key["flow"]["alpha"] == pytest.approx(-0.75)
    # no pooled test across criteria; the agreement over all 24 (pair, criterion) units stays:
    # 16 (A,A), 8 (A,B): n_A = 40, n_B = 8, D_o = 16/48, D_e = 2*40*8/(48*47) -> alpha = -0.175
    assert "overall" not in by_key
    assert exported["overall_alpha"] == pytest.approx(-0.175)
    assert "*" not in page.locator("#row-user_control").inner_text()  # 4 pairs cannot reach p < 0.05


def _say(page, action: str, text: str = "") -> None:
    page.select_option("#action", action)
    page.fill("#text", text)
    with page.expect_navigation():
        page.locator("#say").click()


def test_play_the_user_against_a_rule_recommender_to_an_acceptance(admin_page, studio):
    page = admin_page
    page.goto(studio["url"] + "/talk")
    shot(page, "talk-start")
    page.fill("input[name=record_id]", "demo-u01")  # target: Inside Man (2006), crime heist
    page.locator("#start").click()
    assert "heist" in page.locator("#target-attributes").inner_text()
    assert "Inside Man" not in page.content()  # the person playing the user never sees the title
    attack = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    _say(page, "disclose-goal", f"I want a crime heist thriller {attack}")
    for _ in range(6):
        options = page.locator("#action option").all_inner_texts()
        if "accept" in options:
            break
        _say(page, "disclose-goal", "Crime, thriller and a heist, please.")
    shot(page, "talk")
    _say(page, "accept", "Sounds great, I'll watch it.")
    outcome = page.locator("#outcome").inner_text()
    assert "accepted" in outcome
    # the escaped text shows as text; nothing ran
    assert attack in page.locator("#transcript").inner_text()
    assert page.title() != "pwned" and page.dialogs == []
    page.locator("#run-link").click()
    rows = page.locator("#episodes tbody tr")
    assert rows.count() >= 1
    assert "accepted" in rows.first.inner_text() and "human" in rows.first.inner_text()
    rows.first.get_by_role("link").click()
    assert attack in page.locator("#transcript").inner_text() and page.title() != "pwned"
    page.goto(studio["url"] + "/")
    assert page.locator("#runs a", has_text="talk/user-vs-rule").count() == 1


def test_play_the_recommender_with_the_catalogue_search_box(admin_page, studio):
    page = admin_page
    page.goto(studio["url"] + "/talk")
    page.check("input[name=role][value=recommender]")
    page.fill("input[name=record_id]", "demo-u01")
    page.locator("#start").click()
    assert page.locator("#persona").count() == 0  # the recommender sees only the conversation
    assert page.locator("#transcript .turn.user").count() == 1  # the rule user spoke first
    page.fill("#title-search", "insde man")  # misspelt: the fuzzy match finds it
    page.locator("#title-results button", has_text="Inside Man (2006)").click()
    assert page.locator("#chosen-titles input[name=title]").get_attribute("value") == "Inside Man (2006)"
    _say(page, "recommend", "Try this one.")
    assert "accepted" in page.locator("#outcome").inner_text()
    assert "Inside Man (2006)" in page.locator("#transcript .turn.recommender").last.inner_text()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def test_requests_are_validated(studio):
    url, study = studio["url"], Study.open(studio["study"])
    token = study.judges()[0].token
    pair_id = study.pairs_for(token)[0].pair_id
    csrf = csrf_of(requests.get(f"{url}/judge/{token}/pair/{pair_id}", timeout=30).text)
    form = {c.key: "left" for c in CRITERIA} | {"csrf": csrf}
    post = lambda path, data: requests.post(url + path, data=data, allow_redirects=False, timeout=30)  # noqa: E731
    assert post(f"/judge/{token}/pair/{pair_id}", {k: v for k, v in form.items() if k != "csrf"}).status_code == 403
    assert post(f"/judge/{token}/pair/{pair_id}", {**form, "csrf": "0" * 40}).status_code == 403
    assert post(f"/judge/not-a-token/pair/{pair_id}", form).status_code == 403
    assert requests.get(f"{url}/judge/not-a-token", timeout=30).status_code == 403
    assert post(f"/judge/{token}/pair/tampered", form).status_code == 400
    assert post(f"/judge/{token}/pair/{pair_id}", {**form, "flow": "middle"}).status_code == 400
    assert post(f"/judge/{token}/pair/{pair_id}", {**form, "flow": "tie"}).status_code == 400  # no ties here
    assert post(f"/judge/{token}/pair/{pair_id}", {**form, "extra": "x"}).status_code == 400
    assert post(f"/judge/{token}/pair/{pair_id}", {**form, "comment": "x" * 2001}).status_code == 413
    assert post(f"/judge/{token}/pair/{pair_id}", {**form, "comment": "x" * 100_000}).status_code == 413


def raw_get(url: str, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, str]:
    """GET ``path`` exactly as written: http.client sends the request line unchanged, where
    requests (urllib3) removes ``..`` segments before the server sees them. A ``Host`` in
    ``headers`` replaces the real one."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    headers = dict(headers or {})
    try:
        host = headers.pop("Host", None)
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for k, v in headers.items():
            conn.putheader(k, v)
        if method == "POST":
            conn.putheader("Content-Length", "0")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", errors="replace")
    finally:
        conn.close()


def test_nothing_outside_the_served_folders_is_served(studio):
    """Traversal reaches the server's own guards unnormalised: the static folder's containment,
    run ids that are index keys (never paths), a run's file whitelist, the study exports' names."""
    url, root = studio["url"], studio["root"]
    (root / "outside.json").write_text('{"secret": "root:x:0:0"}')  # a servable suffix, outside every run
    # a symbolic link inside a run folder, to a file outside every run
    (root / "runs" / "rule" / "leak.json").symlink_to(root / "outside.json")
    # the premise: requests would send the normalised path, this one reaches the app as written
    moved = "/runs/runs/yes-sayer/../rule/files/config.json"
    assert requests.get(url + moved, headers=ADMIN, timeout=30).status_code == 200
    assert raw_get(url, moved, ADMIN)[0] == 404
    assert raw_get(url, "/runs/runs/rule/files/config.json", ADMIN)[0] == 200
    assert "leak.json" not in raw_get(url, "/runs/runs/rule", ADMIN)[1]
    for path in ("/static/../app.py", "/static/..%2Fapp.py", "/static/../../../pyproject.toml",
                 "/runs/runs/rule/files/..", "/runs/runs/rule/files/..%2F..%2Fstudies%2Frule-vs-yes.sqlite",
                 "/runs/runs/rule/../../studies/files/rule-vs-yes.sqlite", "/runs/runs/rule/../../files/outside.json",
                 "/runs/runs/rule/..%2F..%2F/files/outside.json", "/runs/..%2F..%2Fetc/files/passwd",
                 "/studies/rule-vs-yes/export/..", "/studies/rule-vs-yes/export/../../x",
                 "/runs/runs/rule/files/leak.json", "/runs/runs/rule/files/./leak.json"):
        status, text = raw_get(url, path, ADMIN)
        assert status == 404, (path, status, text[:200])
        assert not any(leak in text for leak in ("root:", "import ", "SQLite format", "[project]")), path
