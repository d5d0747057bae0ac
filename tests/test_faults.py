"""Actor death is an episode failure, not a run failure: kill -9 of the model server or the agent
host mid-run (real Ray, real processes). The episodes in flight end as infrastructure failures, Ray
restarts the actor, the run finishes (exit 0), and --resume completes every planned id exactly once."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, subprocess_env

sys.path.insert(0, str(ROOT / "experiments"))
from chaos import actor_pid  # noqa: E402  (kills the actor found below the driver, as the chaos runs do)

from interplay.episode_log import FailureKind, latest_episodes, read_episodes


def run_and_kill(args: list[str], log: Path, actor: str) -> tuple[subprocess.Popen, str, str]:
    """Start a run, kill -9 its ``actor`` once the first episode is logged, wait for the run's end."""
    proc = subprocess.Popen(args, env=subprocess_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    killed = None
    try:
        deadline = time.time() + 300
        while time.time() < deadline and killed is None:
            if log.exists() and log.read_bytes().count(b"\n") >= 1:
                killed = actor_pid(proc.pid, actor)
                if killed is not None:
                    os.kill(killed, signal.SIGKILL)
            assert proc.poll() is None, "the run ended before the actor could be killed"
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed is not None, f"no ray::{actor} process found"
    return proc, stdout, stderr


def llm_run(model: Path, out: Path, n: int, *extra: str, concurrency: int = 4) -> list[str]:
    return [sys.executable, "-m", "interplay.cli", "simulate", "--no-progress", "--user", f"llm:{model}",
            "--recommender", f"llm:{model}", "--episodes", str(n), "--max-turns", "6", "--concurrency",
            str(concurrency), "--max-new-tokens", "24", "--dtype", "float32", "--out", str(out), *extra]


@pytest.mark.parametrize("actor", ["ModelServer", "AgentHost"])
def test_killed_actor_fails_its_episodes_only_and_resume_completes(actor, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    n = 12
    # every episode starts at once: when the first is logged, eleven are in flight, so the kill
    # lands during some actor call (with 4 in flight, all four were once between calls: a flake)
    args = llm_run(tiny_model_dir, out, n, concurrency=n)
    log = out / "episodes.jsonl"
    proc, stdout, stderr = run_and_kill(args, log, actor)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    first = list(read_episodes(log))
    assert len(first) == n and len({e.episode_id for e in first}) == n
    infra = [e for e in first if e.failure is FailureKind.INFRASTRUCTURE]
    assert infra, "the kill hit no episode in flight"
    assert len(infra) < n and all(e.failure is None for e in first if e not in infra)  # the rest completed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failure"]["infrastructure"] == len(infra) and summary["episodes"] == n

    done = subprocess.run([*args, "--resume"], env=subprocess_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    final = latest_episodes(log)
    assert sorted(e.episode_id for e in final) == sorted(e.episode_id for e in first)
    assert not [e for e in final if e.failure is FailureKind.INFRASTRUCTURE]
    lines = list(read_episodes(log))
    assert len(lines) == n + len(infra)  # each failed id re-run once, appended
    assert collections.Counter(e.episode_id for e in lines[n:]) == collections.Counter(e.episode_id for e in infra)


def test_a_run_without_restarts_left_stops_in_one_line_and_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    n = 12
    args = llm_run(tiny_model_dir, out, n, "--actor-restarts", "0")
    log = out / "episodes.jsonl"
    proc, stdout, stderr = run_and_kill(args, log, "ModelServer")
    text = " ".join(stdout.split())
    assert proc.returncode == 1 and "run stopped: an actor died more than 0 times" in text, text[-2000:]
    assert "continue with --resume" in text and "Traceback" not in stdout + stderr
    done_before = {e.episode_id for e in latest_episodes(log) if e.failure is None}
    summary = json.loads((out / "summary.json").read_text())
    assert "stopped" in summary and summary["episodes"] < n  # what finished is on disk; the rest never started
    resumed = subprocess.run(args, env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 2 and "--resume" in resumed.stdout  # the folder holds a run
    resumed = subprocess.run([*args, "--resume"], env=subprocess_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    final = latest_episodes(log)
    assert len(final) == n and not [e for e in final if e.failure is FailureKind.INFRASTRUCTURE]
    assert done_before <= {e.episode_id for e in final}
