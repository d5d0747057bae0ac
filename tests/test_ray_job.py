"""`ray job submit` of experiments/pearl_sim.py against a real Ray head on loopback, token auth on."""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

from interplay.episode_log import read_episodes

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env(token_file: Path) -> dict:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env.update(PATH=f"{bindir}:{env.get('PATH', '')}", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
               RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    return env


def test_ray_job_submit_pearl_sim(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # short: Ray's socket paths have a length limit
    token = temp / "token"
    token.write_text(secrets.token_hex(32))
    env = ray_env(token)
    ray = str(Path(sys.executable).parent / "ray")
    gcs, dash = free_port(), free_port()
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
         "--dashboard-port", str(dash), "--ray-client-server-port", str(free_port()),
         "--dashboard-agent-listen-port", str(free_port()), "--num-cpus", "2", "--temp-dir", str(temp),
         "--include-dashboard", "true"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    address = f"http://127.0.0.1:{dash}"
    out = tmp_path / "job-run"
    job_id = f"interplay-test-{secrets.token_hex(4)}"
    try:
        deadline = time.time() + 180
        while True:  # wait for the dashboard's job API
            probe = subprocess.run([ray, "job", "list", "--address", address], env=env, capture_output=True, text=True)
            if probe.returncode == 0:
                break
            assert head.poll() is None, head.stdout.read()
            assert time.time() < deadline, probe.stderr[-2000:]
            time.sleep(2)
        submit = subprocess.run(
            [ray, "job", "submit", "--address", address, "--submission-id", job_id, "--no-wait",
             "--working-dir", str(ROOT), "--", "python", "experiments/pearl_sim.py", "--user", "rule",
             "--recommender", "rule", "--episodes", "8", "--max-turns", "8", "--out", str(out), "--no-progress"],
            env=env, capture_output=True, text=True, timeout=300)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        status = ""
        deadline = time.time() + 300
        while time.time() < deadline:
            st = subprocess.run([ray, "job", "status", "--address", address, job_id], env=env, capture_output=True,
                                text=True)
            status = re.sub(r"\x1b\[[0-9;]*m", "", st.stdout + st.stderr).lower()
            if any(s in status for s in ("succeeded", "failed", "stopped")):
                break
            time.sleep(2)
        logs = subprocess.run([ray, "job", "logs", "--address", address, job_id], env=env, capture_output=True,
                              text=True).stdout
        assert "succeeded" in status, status + logs[-3000:]
        episodes = list(read_episodes(out / "episodes.jsonl"))
        assert len(episodes) == 8 and len({e.episode_id for e in episodes}) == 8
        assert json.loads((out / "config.json").read_text())["user"] == "rule"
        assert "episodes" in logs  # the job printed its summary table
        # without the token the job API refuses
        noauth = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = subprocess.run([ray, "job", "list", "--address", address], env=noauth, capture_output=True, text=True)
        assert refused.returncode != 0
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)
