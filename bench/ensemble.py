"""Ensembles: one ensemble job on two workers against its members run one after another, and what
an ensemble finds on the Adult protocol against single runs.

    python bench/ensemble.py [--members 4] [--workers 2] [--iterations 400] [--seeds 0 1 2]
                             [--data ../shared/data] [--only timing|quality]
                             [--database dvrl_bench] [--redis redis://127.0.0.1:6379/14]

Timing: ``--workers`` real ``dvrl worker`` processes on the local PostgreSQL (``--database``,
recreated) and Redis (``--redis``, emptied), the API in this process. On the Adult protocol's
tables (seed 0: 1,000 training rows with 20% of their labels flipped, 400 validation rows), one
job with ``ensemble: K``, then its K members as K single jobs submitted one after another, each
with its member's seed (the same runs). Prints both wall times (POST to SUCCEEDED), their ratio
(target <= 0.6 with two workers: ideally 1 / workers, plus the combination), and the largest
difference between the ensemble's values and the single jobs' mean (0: the same runs), and DVRL's
iterations/s per member while members ran at once against a single job's alone (how much of
the machine the workers could use together).

Quality: for each protocol seed, the K members fitted in this process, one after another (seeds
``member_seeds(seed, K)``, combined by dvrl_core.ensemble.combine_results): found@20 and AUROC
of the flipped labels for each member alone (what a single run gives: mean, lowest and highest)
and for the ensemble's mean values, with the ensemble's rank stability and its members' trust
verdicts.

Timings depend on the machine's other load: print ``uptime`` beside them.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after ROOT: bench/api.py is not the api package
from adult_protocol import DEFAULT_DATA, adult_protocol  # noqa: E402
from harness import DATABASE, REDIS_URL, api_key, fresh_database  # noqa: E402

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _csv(frame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


class Service:
    """The API in process (FastAPI's test client) and real worker processes."""

    def __init__(self, database_url: str, redis_url: str, workers: int, logs: Path) -> None:
        os.environ |= {"DVRL_DATABASE_URL": database_url, "DVRL_BROKER_URL": redis_url}
        from fastapi.testclient import TestClient

        from api.app import create_app

        env = os.environ | {"DVRL_DATABASE_URL": database_url, "DVRL_BROKER_URL": redis_url}
        self.workers = [subprocess.Popen(
            [sys.executable, "-m", "dvrl_cli", "worker", "--loglevel", "WARNING"], cwd=ROOT,
            env=env, stdout=open(logs / f"worker-{i}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT) for i in range(workers)]
        self.client = TestClient(create_app(run_embedded_worker=False))
        self.client.__enter__()
        self.client.headers["Authorization"] = f"Bearer {api_key('bench', 'ensemble bench')}"

    def wait_for_workers(self, count: int, timeout: float = 180) -> None:
        from service.dispatch import celery_app

        deadline = time.monotonic() + timeout
        while len(celery_app().control.ping(timeout=1.0) or []) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"fewer than {count} workers answered within {timeout:.0f} s")
            time.sleep(0.5)

    def upload(self, frame, name: str) -> str:
        response = self.client.post("/v1/datasets", files={"file": (name, _csv(frame))})
        response.raise_for_status()
        return response.json()["id"]

    def run(self, spec: dict) -> tuple[float, dict]:
        """Submit a job and wait for it: (seconds from POST to its end, the job)."""
        started = time.perf_counter()
        response = self.client.post("/v1/jobs", json=spec)
        response.raise_for_status()
        job_id = response.json()["id"]
        while (job := self.client.get(f"/v1/jobs/{job_id}").json())["state"] not in FINAL:
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        if job["state"] != "SUCCEEDED":
            raise SystemExit(f"job {job_id} ended {job['state']}: {job['error']}")
        return elapsed, job

    def values(self, job_id: str) -> np.ndarray:
        items = self.client.get(f"/v1/jobs/{job_id}/values",
                                params={"order": "row", "page_size": 10_000}).json()["items"]
        return np.array([item["value"] for item in items])

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def timing(args: argparse.Namespace) -> None:
    import tempfile

    from dvrl_core.ensemble import member_seeds

    database_url = fresh_database(args.database, args.redis)
    _, _, raw = adult_protocol(0, args.data)
    with tempfile.TemporaryDirectory() as logs:
        service = Service(database_url, args.redis, args.workers, Path(logs))
        try:
            service.wait_for_workers(args.workers)
            base = {"dataset_id": service.upload(raw["train"], "adult-train.csv"),
                    "target": "income",
                    "validation": {"dataset_id": service.upload(raw["valid"], "adult-valid.csv")},
                    "evaluations": [], "dvrl": {"iterations": args.iterations}}
            service.run(base | {"ensemble": args.workers, "dvrl": {"iterations": 5}})  # warm-up
            ensemble_s, ensemble = service.run(base | {"ensemble": args.members, "seed": 0})
            singles = [service.run(base | {"seed": seed})
                       for seed in member_seeds(0, args.members)]
            sequential_s = sum(seconds for seconds, _ in singles)
            mean = np.mean([service.values(job["id"]) for _, job in singles], axis=0)
            difference = float(np.abs(service.values(ensemble["id"]) - mean).max())
        finally:
            service.close()
    print(f"\ntiming: Adult protocol (1,000 rows), {args.iterations} iterations a run, "
          f"{args.workers} workers")
    print(f"  ensemble of {args.members} (one job):          {ensemble_s:8.1f} s")
    print(f"  its {args.members} members one after another:     {sequential_s:8.1f} s  "
          f"({', '.join(f'{s:.1f}' for s, _ in singles)})")
    print(f"  ratio ensemble / sequential:         {ensemble_s / sequential_s:8.2f}  "
          "(target <= 0.6)")
    print(f"  ensemble values vs the single jobs' mean: largest difference {difference:.2e}")
    parallel = ensemble["summary"]["timings"]["iterations_per_s"]
    alone = float(np.mean([job["summary"]["timings"]["iterations_per_s"] for _, job in singles]))
    print(f"  DVRL speed: {parallel:.1f} it/s a member while {args.workers} ran at once, "
          f"{alone:.1f} it/s a single job alone: the workers together did "
          f"{args.workers * parallel / alone:.2f}x one worker's work (other load on the "
          "machine lowers it; the ratio above is about 1 / that)")
    print(f"  load: {_uptime()}")


def quality(args: argparse.Namespace) -> None:
    from dvrl_core import DVRL, detection_auroc, found_fraction
    from dvrl_core.ensemble import combine_results, member_seeds

    print(f"\nquality: Adult protocol, {args.iterations} iterations a run, "
          f"ensembles of {args.members}; found@20 / AUROC of the flipped labels")
    print(f"  {'seed':>4}  {'single run: mean [low, high]':>40}  {'ensemble':>16}  "
          f"{'rank stability':>14}  trust (returned)")
    rows = []
    for seed in args.seeds:
        data, corrupted, _ = adult_protocol(seed, args.data)
        seeds = member_seeds(seed, args.members)
        members = [DVRL(iterations=args.iterations, random_state=s).fit(data) for s in seeds]
        result = combine_results(members, seeds)
        single_found = [found_fraction(m.values, corrupted, 0.2) for m in members]
        single_auroc = [detection_auroc(m.values, corrupted) for m in members]
        found = found_fraction(result.values, corrupted, 0.2)
        auroc = detection_auroc(result.values, corrupted)
        stability = result.diagnostics["ensemble"]["rank_stability"]["mean_spearman"]
        trust = result.diagnostics.get("trust", {})
        rows.append((np.mean(single_found), np.mean(single_auroc), found, auroc))
        single = (f"{np.mean(single_found):.3f} [{min(single_found):.3f}, "
                  f"{max(single_found):.3f}] / {np.mean(single_auroc):.3f}")
        print(f"  {seed:>4}  {single:>40}  {found:.3f} / {auroc:.3f}  {stability:>14.3f}  "
              f"{trust.get('returned_counts', {})}", flush=True)
    means = np.mean(rows, axis=0)
    print(f"  mean  single run {means[0]:.3f} / {means[1]:.3f}   ensemble {means[2]:.3f} / "
          f"{means[3]:.3f}")


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", choices=["timing", "quality"])
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--redis", default=REDIS_URL)
    args = parser.parse_args()
    print(f"load at start: {_uptime()}")
    if args.only in (None, "timing"):
        timing(args)
    if args.only in (None, "quality"):
        quality(args)


if __name__ == "__main__":
    main()
