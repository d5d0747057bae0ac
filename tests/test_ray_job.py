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


def wait_for_job(ray: str, address: str, job_id: str, env: dict, timeout_s: float) -> tuple[str, str]:
    """The job's final status (lower case, colours stripped) and its logs."""
    status, deadline = "", time.time() + timeout_s
    while time.time() < deadline:
        st = subprocess.run([ray, "job", "status", "--address", address, job_id], env=env, capture_output=True,
                            text=True)
        status = re.sub(r"\x1b\[[0-9;]*m", "", st.stdout + st.stderr).lower()
        if any(s in status for s in ("succeeded", "failed", "stopped")):
            break
        time.sleep(2)
    logs = subprocess.run([ray, "job", "logs", "--address", address, job_id], env=env, capture_output=True,
                          text=True).stdout
    return status, logs


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
        status, logs = wait_for_job(ray, address, job_id, env, 300)
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


def start_node(ray: str, env: dict, cwd: Path, args: list[str]) -> subprocess.Popen:
    """``ray start --block`` with private ports (two nodes share this machine)."""
    ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
             "--metrics-export-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
             "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
             "--min-worker-port", "0", "--max-worker-port", "0"]  # 0: worker ports picked by the OS
    return subprocess.Popen([ray, "start", "--block", *ports, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)


def stop_node(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_two_node_cluster_spreads_the_replicas(tmp_path, tiny_model_dir):
    """A head and a second node (two ``ray start`` processes, token auth): ``ray job submit`` of
    pearl_sim.py with ``--replicas 2`` puts one model server and one agent host on each node,
    each server holding its node's GPU (a resource Ray schedules by; torch finds no CUDA here and
    runs on the CPU), and every planned episode is logged once."""
    temp = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))
    token = temp / "token"
    token.write_text(secrets.token_hex(32))
    env = ray_env(token)
    ray = str(Path(sys.executable).parent / "ray")
    gcs, dash = free_port(), free_port()
    head = start_node(ray, env, tmp_path, ["--head", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
                                           "--dashboard-port", str(dash), "--ray-client-server-port", str(free_port()),
                                           "--num-cpus", "2", "--num-gpus", "1", "--temp-dir", str(temp),
                                           "--include-dashboard", "true"])
    nodes = [head]
    address = f"http://127.0.0.1:{dash}"
    out = tmp_path / "job-run"
    job_id = f"interplay-2n-{secrets.token_hex(4)}"
    try:
        deadline = time.time() + 180
        while subprocess.run([ray, "job", "list", "--address", address], env=env, capture_output=True).returncode:
            assert head.poll() is None, head.stdout.read()
            assert time.time() < deadline, "the head's job API did not come up"
            time.sleep(2)
        # the second node gets its own temp dir: two nodes on one machine sharing one session dir share
        # one runtime_resources folder, and one node's agent can evict the working dir the other runs in
        nodes.append(start_node(ray, env, tmp_path, ["--address", f"127.0.0.1:{gcs}", "--num-cpus", "2",
                                                      "--num-gpus", "1", "--temp-dir", str(temp / "node2")]))
        deadline = time.time() + 180
        while True:  # wait until the cluster has both nodes' CPUs
            st = subprocess.run([ray, "status", "--address", f"127.0.0.1:{gcs}"], env=env, capture_output=True,
                                text=True)
            if re.search(r"/4\.0 CPU", st.stdout):
                break
            assert nodes[1].poll() is None, nodes[1].stdout.read()
            assert time.time() < deadline, st.stdout + st.stderr
            time.sleep(2)
        model = f"llm:{tiny_model_dir}"
        submit = subprocess.run(
            [ray, "job", "submit", "--address", address, "--submission-id", job_id, "--no-wait",
             "--working-dir", str(ROOT), "--", "python", "experiments/pearl_sim.py", "--user", model,
             "--recommender", model, "--episodes", "6", "--max-turns", "4", "--max-new-tokens", "12",
             "--replicas", "2", "--concurrency", "4", "--out", str(out), "--no-progress"],
            env=env, capture_output=True, text=True, timeout=300)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        status, logs = wait_for_job(ray, address, job_id, env, 480)
        assert "succeeded" in status, status + logs[-3000:]
        episodes = list(read_episodes(out / "episodes.jsonl"))
        assert len(episodes) == 6 and len({e.episode_id for e in episodes}) == 6
        placed = json.loads((out / "summary.json").read_text())["placement"]
        assert placed["nodes"] == 2 and len(placed["replicas"]) == 2
        host_nodes = [r["agent_host"]["node_id"] for r in placed["replicas"]]
        server_nodes = [n["node_id"] for r in placed["replicas"] for n in r["model_servers"].values()]
        assert len(set(host_nodes)) == 2 and len(set(server_nodes)) == 2  # one of each per node
        for r in placed["replicas"]:  # a replica's host talks to a server on its own node
            assert {n["node_id"] for n in r["model_servers"].values()} == {r["agent_host"]["node_id"]}
            assert all(len(n["gpu_ids"]) == 1 for n in r["model_servers"].values())
        assert any((temp / "node2").glob("session_*/runtime_resources"))  # the second node kept its own
    finally:
        for proc in reversed(nodes):
            stop_node(proc)
        shutil.rmtree(temp, ignore_errors=True)
