"""A run whose driver is killed midway (SIGKILL) leaves no Ray process behind, and --resume
completes it exactly."""

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, subprocess_env

from interplay.episode_log import read_episodes


def _descendants(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _alive(procs: list) -> list:
    return [p for p in procs if p.is_running() and p.status() != "zombie"]


def _gone_by(procs: list, deadline: float) -> list:
    """The processes of ``procs`` still alive at ``deadline`` (returns as soon as none is)."""
    left = _alive(procs)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = _alive(procs)
    return left


def _as_from_a_terminal() -> None:
    """Ctrl-C's default in the child, as in a terminal. A suite started in the background by a
    non-interactive shell (`make test &`, `(... &)`) runs with SIGINT ignored, and an ignored
    signal stays ignored across exec: the CLI then never sees the test's SIGINT and runs to its end
    (seen twice in suites started that way)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start_until(args: list[str], log, lines: int, deadline: float, output: Path | None = None) -> subprocess.Popen:
    """The CLI started in its own process group, once ``log`` holds ``lines`` lines (killed, and
    the test failed, if it ends or the deadline passes first); its output goes to ``output``."""
    sink = output.open("wb") if output is not None else subprocess.DEVNULL
    proc = subprocess.Popen(args, env=subprocess_env(), cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_as_from_a_terminal)
    while time.time() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= lines:
            return proc
        if proc.poll() is not None:
            raise AssertionError("the run ended before it could be stopped")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"{log} did not reach {lines} lines in time")


def test_kill_midway_then_resume(tmp_path):
    out = tmp_path / "run"
    n = 600
    args = [sys.executable, "-m", "interplay.cli", "simulate", "--no-progress", "--user", "rule", "--recommender",
            "rule", "--episodes", str(n), "--concurrency", "4", "--out", str(out)]
    log = out / "episodes.jsonl"
    deadline = time.time() + 300
    proc = _start_until(args, log, 40, deadline)
    try:
        ray_procs = _descendants(proc.pid)
        assert len(ray_procs) >= 4, ray_procs  # gcs, raylet, agents, workers
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as the OOM killer would
        proc.wait()
        left = _gone_by(ray_procs, deadline)
        assert not left, f"the killed driver's Ray processes still run: {[p.name() for p in left]}"
    finally:
        for p in _alive(_descendants(proc.pid) if proc.poll() is None else []):
            p.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = [e.episode_id for e in read_episodes(log, allow_partial_tail=True)]
    assert 40 <= len(before) < n, f"killed too late: {len(before)} episodes"

    done = subprocess.run([*args, "--resume"], env=subprocess_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [e.episode_id for e in read_episodes(log)]
    dupes = [i for i, c in collections.Counter(ids).items() if c > 1]
    assert not dupes and len(ids) == n
    assert set(before) <= set(ids)
    assert sorted(int(i.split("-")[0]) for i in ids) == list(range(n))


def test_ctrl_c_stops_an_evaluation_and_keeps_its_rows(tmp_path, tiny_model_dir, built_sources):
    """Ctrl-C (SIGINT) mid-evaluation stops it without waiting for the agent host to close the
    tasks in flight (it used to wait on a busy host for minutes), leaves no Ray process behind, and
    the rows already logged stay for --resume."""
    out = tmp_path / "eval"
    args = [sys.executable, "-m", "interplay.cli", "evaluate", "user", "--no-progress", "--agent",
            f"llm:{tiny_model_dir}", "--data", str(built_sources / "redial"), "--split", "test", "--parts", "human",
            "--decision", "generate", "--max-new-tokens", "48", "--concurrency", "8", "--out", str(out)]
    rows = out / "human_view.jsonl"
    deadline = time.time() + 300
    output = tmp_path / "output.txt"
    proc = _start_until(args, rows, 2, deadline, output)
    try:
        ray_procs = _descendants(proc.pid)
        at_signal = rows.read_bytes().count(b"\n")
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)  # liveness: it stops, instead of draining the queue of the 290 items
        now, tail = rows.read_bytes().count(b"\n"), output.read_text(errors="replace")[-3000:]
        assert proc.returncode != 0, f"exit 0 after SIGINT; rows at the signal {at_signal}, now {now}; output: {tail}"
        left = _gone_by(ray_procs, deadline)
        assert not left, f"Ray processes still run after Ctrl-C: {[p.name() for p in left]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    kept = [line for line in rows.read_text().splitlines() if line.strip()]
    assert 2 <= len(kept) < 290  # what was logged stays; the rest is left for --resume
