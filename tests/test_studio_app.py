"""The studio's pieces without a browser: the command line, the runs index, the text rendering
and the load test on loopback (real server, real HTTP, real SQLite)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from interplay.cli.studio import is_loopback
from interplay.studio.rendering import item_href, render_turn_text
from interplay.studio.runs_index import RunsIndex, filter_episodes
from interplay.studio.sample_runs import play_local_run
from conftest import subprocess_env


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    play_local_run(root / "rule", episodes=6, max_turns=10)
    play_local_run(root / "nested" / "deeper" / "short", episodes=3, max_turns=2)
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("nothing here")
    return root


def test_model_text_is_escaped_and_only_title_markup_becomes_links():
    html = str(render_turn_text("Try <movie_title>Heat (1995)</movie_title> <script>alert(1)</script> & more",
                                item_href("/runs/r")))
    assert html == ('Try <a class="title" href="/runs/r/item?title=Heat%20%281995%29">Heat (1995)</a> '
                    "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more")
    # a title that is itself an attack stays text inside the link
    html = str(render_turn_text('<movie_title>"><img src=x></movie_title>'))
    assert html == '<span class="title">&#34;&gt;&lt;img src=x&gt;</span>'
    assert str(render_turn_text(None)) == ""


def test_runs_index_finds_runs_below_its_roots_once_and_serves_only_their_files(runs):
    index = RunsIndex([runs, runs / "rule"])  # the same run under two roots is listed once
    ids = sorted(e.run_id for e in index.entries())
    assert ids == [f"{runs.name}/nested/deeper/short", f"{runs.name}/rule"]
    entry = index.get(f"{runs.name}/rule")
    assert entry.kind == "simulation" and len(entry.episodes()) == 6
    assert entry.file("summary.json") is not None and entry.file("../nested") is None
    assert entry.file("episodes.jsonl/../config.json") is None
    # a run created after the scan is found on request
    play_local_run(runs / "late", episodes=1)
    assert index.get(f"{runs.name}/late") is not None


def test_episode_filters(runs):
    episodes = RunsIndex([runs]).get(f"{runs.name}/rule").episodes()
    accepted = [e for e in episodes if e.termination.value == "accepted"]
    assert filter_episodes(episodes, termination="accepted") == accepted
    assert filter_episodes(episodes, min_turns=99) == []
    first = episodes[0]
    assert filter_episodes(episodes, query=first.target.title.upper()) == [e for e in episodes
                                                                           if e.target.title == first.target.title]
    assert filter_episodes(episodes, accepted="heat") == [e for e in episodes
                                                          if "heat" in (e.accepted_item or "").lower()]


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


def _lan_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    import socket

    import psutil

    return next((a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                 if a.family == socket.AF_INET and not is_loopback(a.address)), None)


def _start_studio(runs: Path, *args: str) -> tuple[subprocess.Popen, int, str]:
    """``interplay studio`` on a free port, answering: the process, its port, what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "interplay.cli", "studio", str(runs), "--port", "0",
                             "--talk-out", str(runs / "talk"), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=subprocess_env(COLUMNS="200"))
    printed = ""
    while not (found := re.search(r"http://\S+:(\d+)/", printed)) or "operator's link" not in printed:
        line = proc.stdout.readline()
        assert line, printed
        printed += line
    port = int(found.group(1))
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    return proc, port, printed


def _listening(proc: subprocess.Popen, port: int) -> set[str]:
    """The addresses the process listens on at ``port`` (what the kernel says, not what it printed)."""
    import psutil

    return {c.laddr.ip for c in psutil.Process(proc.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_studio_command_binds_loopback_unless_told_and_warns_off_loopback(runs):
    lan = _lan_address()
    proc, port, printed = _start_studio(runs)
    try:
        assert f"http://127.0.0.1:{port}/" in printed and "warning" not in printed, printed
        assert _listening(proc, port) == {"127.0.0.1"}
        # the operator's link, printed once, holds a random token; without it the runs are 403
        link = re.search(rf"operator's link .*?(http://127\.0\.0\.1:{port}/\?token=(\S+))", printed)
        assert link and len(link.group(2)) >= 16, printed
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 403
        with requests.Session() as operator:
            r = operator.get(link.group(1), timeout=30)  # sets the cookie, then redirects to / without the token
            assert r.status_code == 200 and f"{runs.name}/rule" in r.text and r.url == f"http://127.0.0.1:{port}/"
            assert operator.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/?token=wrong-token-0123456789", timeout=30).status_code == 403
        if lan is not None:  # unreachable from the network
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{lan}:{port}/", timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    token = "operator-token-0123456789"
    proc, port, printed = _start_studio(runs, "--host", "0.0.0.0", "--admin-token", token,
                                        *(["--allowed-host", lan] if lan else []))
    try:
        assert "warning: binding 0.0.0.0: the network can reach this studio over plain HTTP" in printed, printed
        assert "need the admin token" in printed and token not in printed  # a token given is never printed
        assert _listening(proc, port) == {"0.0.0.0"}
        bearer = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"http://127.0.0.1:{port}/", headers={**bearer, "Host": "evil.example"},
                            timeout=30).status_code == 400
        if lan is not None:
            assert requests.get(f"http://{lan}:{port}/", timeout=30).status_code == 403
            r = requests.get(f"http://{lan}:{port}/", headers=bearer, timeout=30)
            assert r.status_code == 200 and f"{runs.name}/rule" in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "interplay.cli", "studio", str(runs), "--study", str(runs / "none.sqlite")],
                         capture_output=True, text=True, env=subprocess_env(COLUMNS="200"))
    assert bad.returncode == 2 and "none.sqlite" in bad.stdout and len(bad.stdout.strip().splitlines()) == 1


@pytest.mark.slow
def test_load_twenty_judges_thousand_judgements_nothing_lost_or_duplicated(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from studio_load import run_load

    figures = run_load(judges=20, pairs=50, double=5, folder=tmp_path)
    print(json.dumps(figures))
    assert figures["errors"] == 0, figures["error_examples"]
    assert figures["judgements_sent"] == 1000 and figures["requests"] == 1100
    assert figures["judgements_stored"] == 1000 and figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["rows"] == 1000 * figures["criteria"]


def test_a_scorecard_folder_shows_its_scorecard_escaped_and_plots_before_figures(runs):
    from interplay.studio.app import create_app
    from interplay.studio.live_server import LiveServer

    card = runs / "fidelity"
    card.mkdir()
    (card / "scorecard.md").write_text("| agent | bal. acc. |\n| rule <b>x</b> | 0.84 |\n")
    (card / "scorecard.json").write_text(json.dumps({"agents": []}))
    app = create_app([runs], talk_out=runs / "talk", admin_token="scorecard-token-0123456789")
    bearer = {"Authorization": "Bearer scorecard-token-0123456789"}
    with LiveServer(app) as server:
        html = requests.get(f"{server.url}/runs/{runs.name}/fidelity", headers=bearer, timeout=30).text
        listing = requests.get(f"{server.url}/", headers=bearer, timeout=30).text
    assert "| rule &lt;b&gt;x&lt;/b&gt; | 0.84 |" in html and "<b>x</b>" not in html
    assert re.search(rf"{runs.name}/fidelity</a></td>\s*<td>fidelity</td>", listing)
