"""The OpenAI-compatible backend against a real `transformers serve` running the offline SmolLM2
on loopback: same parsed turns as the local backend under greedy decoding, timeouts, a server
stopped mid-run (episodes end `agent_error`, the run finishes, `--resume` completes them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, subprocess_env
from interplay.backends.base import GenerationParams
from interplay.episode import Observation, build_recommender_view, build_user_view
from interplay.episode_log import Termination, latest_episodes, read_episodes
from interplay.protocol import ProtocolError
from interplay.simulation_data import load_demo

INTERPLAY = [sys.executable, "-m", "interplay.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`transformers serve MODEL` on 127.0.0.1:PORT, started and stopped by the tests."""

    def __init__(self, model: str, port: int):
        self.model, self.port, self.proc = model, port, None
        self.url = f"http://127.0.0.1:{port}/v1"

    def start(self, timeout: float = 240) -> None:
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
        self.proc = subprocess.Popen([exe, "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port),
                                      "--dtype", "float32"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=subprocess_env(), start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise RuntimeError("transformers serve did not come up")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def server():
    from interplay.backends.default_model import default_model_path

    s = Server(str(default_model_path()), _free_port())
    s.start()
    yield s
    s.stop()


def _observations():
    demo = load_demo()
    out = []
    for spec in demo.episodes[:2]:
        out.append(("user", build_user_view(spec.record_id, spec), Observation(history=[], turn_index=0)))
        out.append(("recommender", build_recommender_view(spec.record_id, spec, with_persona=True),
                    Observation(history=[], turn_index=0)))
    return demo.catalogue, out


def test_same_turns_as_the_local_backend(server):
    from agents.zero_shot import ZeroShotRecommender, ZeroShotUser
    from interplay.backends.http_clients import http_backend
    from interplay.backends.transformers_backend import TransformersBackend

    local = TransformersBackend(server.model, dtype="float32")
    remote = http_backend(server.url, server.model)
    params = GenerationParams(max_new_tokens=40, decoding="free")  # the same free text both ways
    catalogue, cases = _observations()
    for role, view, obs in cases:
        cls = ZeroShotUser if role == "user" else ZeroShotRecommender
        a = cls(local, local.tokenizer, params, catalogue=catalogue)
        b = cls(remote, None, params, catalogue=catalogue)
        a.reset(view)
        b.reset(view)
        ta, tb = a.act(obs), b.act(obs)
        assert (ta.action, ta.text, ta.meta["fallback"]) == (tb.action, tb.text, tb.meta["fallback"]), (ta.raw, tb.raw)
    assert remote.stats()["requests"] >= 4 and remote.stats()["failures"] == 0


def test_a_server_that_ignores_the_grammar_is_detected(server):
    from agents.zero_shot import ZeroShotRecommender
    from interplay.backends.openai_http import OpenAIChatBackend

    remote = OpenAIChatBackend(server.url, server.model)
    catalogue, cases = _observations()
    _, view, obs = cases[1]
    agent = ZeroShotRecommender(remote, None, GenerationParams(max_new_tokens=48), catalogue=catalogue)
    agent.reset(view)
    for i in range(3):
        try:
            turn = agent.act(obs.model_copy(update={"turn_index": i}))
            assert turn.meta["decoding"] in {"parse-after", "constrained"}
        except ProtocolError:
            pass
        if remote.grammar_supported is False:
            break
    # transformers serve takes the field and does not apply it: detected, answers parsed afterwards
    assert remote.grammar_supported is False and remote.stats()["grammar_supported"] is False
    assert agent.decoding_mode() == "parse-after"


def test_server_stopped_mid_run_then_resume(server, tmp_path):
    out = tmp_path / "run"
    env = subprocess_env(INTERPLAY_HTTP_RETRIES="1", INTERPLAY_HTTP_TIMEOUT="120")
    args = [*INTERPLAY, "simulate", "--no-progress", "--user", f"zero-shot:{server.model}@{server.url}",
            "--recommender", "rule", "--episodes", "4", "--concurrency", "1", "--max-turns", "4",
            "--max-new-tokens", "16", "--max-retries", "0", "--out", str(out)]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "episodes.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 1):
        time.sleep(0.5)
    server.stop()  # mid-run: at least one episode done, the others to come
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    first = list(read_episodes(log))
    assert len(first) == 4 and first[0].termination is not Termination.AGENT_ERROR
    failed = [e for e in first if e.termination is Termination.AGENT_ERROR]
    assert failed and all("Connection" in (e.error or "") or "connect" in (e.error or "").lower() for e in failed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["termination"]["agent_error"] == len(failed)
    assert 0 <= summary["protocol_clean_rate"] <= summary["parsed_turn_rate"] <= 1
    assert summary["fallback_rate"] == pytest.approx(summary["parsed_turn_rate"] - summary["protocol_clean_rate"])

    server.start()
    proc = subprocess.run(args + ["--resume"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = latest_episodes(log)
    assert len(final) == 4 and not [e for e in final if e.termination is Termination.AGENT_ERROR]
    assert len(list(read_episodes(log))) == 4 + len(failed)  # re-run episodes were appended, nothing rewritten
    assert json.loads((out / "summary.json").read_text())["termination"]["agent_error"] == 0


def test_the_repetition_penalty_is_sent_and_dropped_where_refused(server):
    """``repetition_penalty`` travels as an extra body field; a server that refuses it (400/422)
    is asked again without it, and not sent it again."""
    from interplay.backends.openai_http import OpenAIChatBackend

    remote = OpenAIChatBackend(server.url, server.model)
    params = GenerationParams(max_new_tokens=8, stop=(), repetition_penalty=1.3)
    out = remote.chat([[{"role": "user", "content": "Hi"}]], params)
    assert isinstance(out[0], str) and remote.repetition_penalty_supported in (True, False)
    refused = remote.repetition_penalty_supported is False
    assert (remote.requests, remote.failures) == ((2, 1) if refused else (1, 0))
    remote.chat([[{"role": "user", "content": "Hi"}]], params)
    assert remote.requests == (3 if refused else 2)  # a refused field is not sent again


def test_slow_responses_time_out_after_bounded_retries(server):
    """(Last in this file: the server goes on generating the abandoned request for a while.)"""
    import openai

    from interplay.backends.openai_http import OpenAIChatBackend

    backend = OpenAIChatBackend(server.url, server.model, timeout_s=0.25, max_retries=1, max_concurrency=1)
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        backend.chat([[{"role": "user", "content": "Tell me a long story about movies."}]],
                     GenerationParams(max_new_tokens=400, stop=()))
    elapsed = time.perf_counter() - t0
    assert backend.requests == 1 and backend.failures == 1
    assert elapsed < 10  # two attempts of 0.25 s and one backoff, not a hang
