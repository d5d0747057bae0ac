"""Chaos and soak: kill parts of real runs at random points, resume, and count the episode ids.

    python experiments/chaos.py --model PATH --runs 4 --soak-episodes 300 --soak-kills 3 --out runs/chaos

Each chaos run is an ``interplay simulate`` of LLM agents on ``--model`` (a subprocess with its own
private Ray). At a random point (after a random number of logged episodes) one random part is
killed with SIGKILL: the model server, the agent host, or the driver itself. A killed actor is
restarted by Ray and the run goes on; a killed driver ends the run, and the next invocation
resumes it. Runs are resumed until every planned episode is logged without an infrastructure
failure. The soak is one long run of rule agents whose agent host is killed repeatedly.

For every run it records the planned episodes, the kills, the lines logged, the distinct ids,
the ids logged as finished more than once (duplicated), the planned ids missing at the end (lost)
and the invocations it took; ``chaos.json`` in ``--out`` holds them all.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("ModelServer", "AgentHost", "driver")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: a run's private Ray lives under its driver)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def actor_pid(driver: int, name: str) -> int | None:
    """The process of the run's actor whose title starts with ``ray::NAME``."""
    for pid in descendants(driver):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(f"ray::{name}"):
            return pid
    return None


def logged_lines(log: Path) -> int:
    return log.read_bytes().count(b"\n") if log.exists() else 0


@dataclass
class ChaosResult:
    """What one run went through and what its log holds at the end."""

    name: str
    planned: int
    kills: list[str] = field(default_factory=list)
    invocations: int = 0
    lines: int = 0
    distinct: int = 0
    duplicated: int = 0
    lost: int = 0
    infrastructure_failures: int = 0
    wall_s: float = 0.0


def planned_ids(out: Path) -> list[str]:
    """The episode ids a run's config plans (:func:`interplay.runtime.simulation.plan_episodes`)."""
    from interplay.runtime.simulation import load_config, plan_episodes
    from interplay.simulation_data import load_simulation_data

    cfg = load_config(out / "config.json")
    return [p[0] for p in plan_episodes(cfg, load_simulation_data(cfg.data, cfg.split))]


def count(out: Path, result: ChaosResult) -> ChaosResult:
    """Fill ``result``'s log figures from ``out/episodes.jsonl``."""
    from interplay.episode_log import FailureKind, latest_episodes, read_episodes

    log = out / "episodes.jsonl"
    lines = list(read_episodes(log))
    finished = collections.Counter(e.episode_id for e in lines if e.failure is not FailureKind.INFRASTRUCTURE)
    latest = {e.episode_id for e in latest_episodes(log)}
    result.lines = len(lines)
    result.distinct = len({e.episode_id for e in lines})
    result.duplicated = sum(1 for c in finished.values() if c > 1)
    result.lost = len(set(planned_ids(out)) - latest)
    result.infrastructure_failures = sum(1 for e in lines if e.failure is FailureKind.INFRASTRUCTURE)
    return result


def run_with_kills(args: list[str], out: Path, kills: list[tuple[str, int]], env: dict, name: str,
                   max_invocations: int = 6, timeout_s: float = 600) -> ChaosResult:
    """Run ``args`` (an ``interplay simulate`` command writing to ``out``); kill each (target,
    after N logged lines) in turn; resume until nothing is missing or failed for infrastructure."""
    from interplay.episode_log import FailureKind, latest_episodes

    log = out / "episodes.jsonl"
    result = ChaosResult(name=name, planned=0)
    t0 = time.perf_counter()
    pending = list(kills)
    first = True
    while result.invocations < max_invocations:
        result.invocations += 1
        proc = subprocess.Popen(args if first else [*args, "--resume"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        first = False
        try:
            deadline = time.time() + timeout_s
            while pending and proc.poll() is None and time.time() < deadline:
                target, after = pending[0]
                if logged_lines(log) >= after:
                    pid = proc.pid if target == "driver" else actor_pid(proc.pid, target)
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                        result.kills.append(f"{target} after {logged_lines(log)} lines")
                        pending.pop(0)
                        if target == "driver":
                            break
                time.sleep(0.05)
            proc.communicate(timeout=max(1.0, deadline - time.time()))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if pending and proc.returncode == 0:  # the run ended before the next kill point
            result.kills += [f"{t} after {a} lines: missed (the run had ended)" for t, a in pending]
            pending.clear()
        if pending and proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"{name}: the run failed (exit {proc.returncode}) before all kills were made")
        if not pending:
            latest = latest_episodes(log) if log.exists() else []
            ids = set(planned_ids(out))
            if {e.episode_id for e in latest} >= ids and not [e for e in latest if e.episode_id in ids and
                                                               e.failure is FailureKind.INFRASTRUCTURE]:
                break
    result.planned = len(planned_ids(out))
    result.wall_s = round(time.perf_counter() - t0, 1)
    return count(out, result)


def simulate_args(out: Path, episodes: int, user: str, recommender: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "interplay.cli", "simulate", "--no-progress", "--user", user,
            "--recommender", recommender, "--episodes", str(episodes), "--out", str(out), *extra]


def chaos_runs(model: str, out: Path, runs: int, seed: int, env: dict, episodes: int = 12) -> list[ChaosResult]:
    """``runs`` LLM runs, each with one kill of a random part at a random point."""
    rng = random.Random(seed)
    results = []
    for i in range(runs):
        target = TARGETS[i % len(TARGETS)] if i < len(TARGETS) else rng.choice(TARGETS)
        after = rng.randint(1, episodes - 2)
        run_out = out / f"chaos-{i}"
        args = simulate_args(run_out, episodes, f"llm:{model}", f"llm:{model}", "--max-turns", "6",
                             "--concurrency", "4", "--max-new-tokens", "24", "--dtype", "float32", "--seed", str(i))
        results.append(run_with_kills(args, run_out, [(target, after)], env, name=f"chaos-{i}"))
    return results


def soak_run(out: Path, episodes: int, kills: int, seed: int, env: dict) -> ChaosResult:
    """One long rule-agent run whose agent host is killed ``kills`` times at random points."""
    rng = random.Random(seed)
    points = sorted(rng.sample(range(episodes // 10, episodes - episodes // 10), kills))
    args = simulate_args(out / "soak", episodes, "rule", "rule", "--max-turns", "10", "--concurrency", "16",
                         "--actor-restarts", str(kills + 1))
    return run_with_kills(args, out / "soak", [("AgentHost", p) for p in points], env, name="soak")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model folder the chaos runs' LLM agents use")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--soak-episodes", type=int, default=300)
    ap.add_argument("--soak-kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()):
        sys.exit(f"error: {a.out} is not empty; choose another --out")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    results = chaos_runs(a.model, a.out, a.runs, a.seed, env, a.episodes)
    results.append(soak_run(a.out, a.soak_episodes, a.soak_kills, a.seed, env))
    (a.out / "chaos.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print("| run | planned | kills | invocations | lines | distinct | duplicated | lost | infra failures | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r.name} | {r.planned} | {'; '.join(r.kills)} | {r.invocations} | {r.lines} | {r.distinct} | "
              f"{r.duplicated} | {r.lost} | {r.infrastructure_failures} | {r.wall_s} |")


if __name__ == "__main__":
    main()
