"""Load test of the studio's judging endpoint on loopback: many judges submitting at once.

    python benchmarks/studio_load.py                 # 20 judges x 50 pairs = 1,000 judgements
    python benchmarks/studio_load.py --judges 5 --pairs 10

It plays two small model-free runs (distinct record ids, so every episode pairs), creates a study
with one judge per simulated judge, starts the real app under uvicorn on a free loopback port and
has every judge submit every pair from its own thread over HTTP, concurrently (each judge also
double-submits ``--double`` of its pairs, as a double click would). Then it counts the judgements
in the study's SQLite file: lost = sent but absent, duplicated = more than one row for a (judge,
pair, criterion). It prints the median and p99 latency of a submission.

The studio's checks are on, as in a real study: the Host allow-list, the Origin check, each
judge's CSRF token (read from the judge's page once, before the clock starts) and the judge's
browser cookie.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from interplay.studio.app import create_app
from interplay.studio.live_server import LiveServer
from interplay.studio.sample_runs import play_local_run
from interplay.studio.study import CRITERIA, Study, create_study


def run_load(judges: int = 20, pairs: int = 50, double: int = 5, folder: Path | None = None) -> dict:
    """Run the load test; return its figures (counts and latencies)."""
    folder = Path(folder or tempfile.mkdtemp(prefix="studio-load-"))
    play_local_run(folder / "runs" / "a", user="rule", recommender="rule", episodes=pairs, distinct_records=True)
    play_local_run(folder / "runs" / "b", user="rule:0", recommender="rule", episodes=pairs, distinct_records=True)
    study_path = folder / "load.sqlite"
    create_study(study_path, folder / "runs" / "a", folder / "runs" / "b", judges=judges, seed=1)
    study = Study.open(study_path)
    tokens = [j.token for j in study.judges()]
    app = create_app([folder / "runs"], [study_path], talk_out=folder / "talk")
    latencies: list[float] = []
    errors: list[str] = []
    sent: set[tuple[str, str]] = set()
    lock = threading.Lock()
    start = threading.Barrier(len(tokens))

    def judge(token: str, url: str) -> None:
        plan = [p.pair_id for p in Study.open(study_path).pairs_for(token)]
        plan += plan[:double]  # double clicks: the same pair again
        with requests.Session() as client:
            client.headers["Origin"] = url  # what a browser sends with a form: checked by the studio
            home = client.get(f"{url}/judge/{token}", timeout=60)  # sets the judge's cookie; the CSRF token
            found = re.search(r'name="csrf" value="([^"]+)"',
                              client.get(f"{url}/judge/{token}/pair/{plan[0]}", timeout=60).text)
            csrf = found.group(1) if found and home.ok else ""
            start.wait()
            for i, pair_id in enumerate(plan):
                form = {c.key: ("left" if (i + k) % 2 else "right") for k, c in enumerate(CRITERIA)} | {"csrf": csrf}
                t0 = time.perf_counter()
                r = client.post(f"{url}/judge/{token}/pair/{pair_id}", data=form, allow_redirects=False, timeout=60)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code != 303:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        sent.add((token, pair_id))

    with LiveServer(app) as server:
        threads = [threading.Thread(target=judge, args=(t, server.url)) for t in tokens]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    rows = Study.open(study_path).judgements()
    names = {j.token: j.name for j in study.judges()}
    stored = {(r["judge"], r["pair_id"]) for r in rows}
    per_key: dict[tuple, int] = {}
    for r in rows:
        key = (r["judge"], r["pair_id"], r["criterion"])
        per_key[key] = per_key.get(key, 0) + 1
    expected = {(names[tok], pid) for tok, pid in sent}
    latencies.sort()
    return {
        "judges": judges, "pairs": pairs, "judgements_sent": len(sent), "requests": len(latencies),
        "errors": len(errors), "error_examples": errors[:3],
        "judgements_stored": len(stored), "lost": len(expected - stored),
        "duplicated": sum(n - 1 for n in per_key.values() if n > 1),
        "rows": len(rows), "criteria": len(CRITERIA),
        "latency_ms_median": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)
        if latencies else None,
        "wall_s": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 1) if wall else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judges", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--double", type=int, default=5, help="pairs each judge submits twice")
    args = parser.parse_args()
    print(json.dumps(run_load(args.judges, args.pairs, args.double), indent=2))


if __name__ == "__main__":
    main()
