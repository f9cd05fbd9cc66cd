"""Load: many clients submit jobs and poll them at once, for a bounded time.

    python bench/load.py [--clients 20] [--seconds 60] [--workers 2] [--drain 300]

Runs a real API server (uvicorn, one process) and ``dvrl worker --concurrency W`` (W =
``--workers`` Celery worker processes, the CPUs divided between them) against the local
PostgreSQL (database ``dvrl_bench``, recreated) and Redis (db 14). Each client uploads
nothing (one shared small table), then loops: submit a small job (with an Idempotency-Key),
poll it about twice a second until it ends, repeat; a 429 is honoured by waiting Retry-After.
After ``--seconds`` no new jobs are submitted and every submitted job is waited for (at most
``--drain`` seconds). Prints jobs submitted, finished, lost (submitted but not SUCCEEDED at the
end: must be 0), 5xx count (must be 0), 429 count, and request latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from harness import PG_URL, REDIS_URL, api_key, free_port, fresh_database  # noqa: E402


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_method: dict[str, list[float]] = {"GET": [], "POST": []}
        self.status: dict[int, int] = {}
        self.submitted: set[str] = set()

    def record(self, started: float, response: httpx.Response) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.by_method[response.request.method].append(self.latencies[-1])
        self.status[response.status_code] = self.status.get(response.status_code, 0) + 1


async def _request(client: httpx.AsyncClient, tally: Tally, method: str, url: str,
                   **kwargs) -> httpx.Response:
    started = time.perf_counter()
    response = await client.request(method, url, **kwargs)
    tally.record(started, response)
    return response


async def _client(base: str, key: str, spec: dict, until: float, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        while time.monotonic() < until:
            idempotency = str(uuid.uuid4())
            response = await _request(client, tally, "POST", "/v1/jobs", json=spec,
                                      headers={"Idempotency-Key": idempotency})
            if response.status_code == 429:
                await asyncio.sleep(float(response.headers.get("Retry-After", "5")))
                continue
            if response.status_code != 202:
                await asyncio.sleep(1)
                continue
            job_id = response.json()["id"]
            tally.submitted.add(job_id)
            while True:
                await asyncio.sleep(0.5)
                job = await _request(client, tally, "GET", f"/v1/jobs/{job_id}")
                if job.status_code == 200 and job.json()["state"] in (
                        "SUCCEEDED", "FAILED", "CANCELLED"):
                    break


async def _final_states(base: str, key: str, ids: set[str], drain: float) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    states: dict[str, str] = {}
    deadline = time.monotonic() + drain
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        while True:
            for job_id in ids:
                if states.get(job_id) in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    continue
                response = await client.get(f"/v1/jobs/{job_id}")
                states[job_id] = response.json()["state"] if response.status_code == 200 \
                    else f"HTTP {response.status_code}"
            unfinished = [j for j in ids if states[j] not in ("SUCCEEDED", "FAILED",
                                                               "CANCELLED")]
            if not unfinished or time.monotonic() > deadline:
                return states
            await asyncio.sleep(1)


def _table(path: Path) -> None:
    from dvrl_core.datasets import make_table

    make_table(600, n_features=6, random_state=0).to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drain", type=float, default=300)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    fresh_database()
    env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL}
    os.environ.update({"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL})
    key = api_key("load", "bench/load.py")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes = [subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port",
                                   str(port)], cwd=ROOT, env=env)]
    # one machine's job slots: --workers worker processes, the CPUs divided between them
    processes.append(subprocess.Popen([sys.executable, "-m", "dvrl_cli", "worker", "--loglevel",
                                       "WARNING", "--concurrency", str(args.workers)],
                                      cwd=ROOT, env=env))
    try:
        with tempfile.TemporaryDirectory() as tmp, httpx.Client(
                base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
            for _ in range(300):
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            path = Path(tmp) / "train.csv"
            _table(path)
            with open(path, "rb") as handle:
                dataset = http.post("/v1/datasets", files={"file": ("train.csv", handle)}).json()
            spec = {"dataset_id": dataset["id"], "target": "label",
                    "validation": {"fraction": 0.3}, "evaluations": [],
                    "dvrl": {"iterations": args.iterations, "rollouts": 4}}
            tally = Tally()
            until = time.monotonic() + args.seconds
            started = time.perf_counter()

            async def run() -> dict[str, str]:
                await asyncio.gather(*(_client(base, key, spec, until, tally)
                                       for _ in range(args.clients)))
                return await _final_states(base, key, tally.submitted, args.drain)

            states = asyncio.run(run())
            elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    finished = sum(1 for s in states.values() if s == "SUCCEEDED")
    lost = len(tally.submitted) - finished
    errors = sum(n for code, n in tally.status.items() if code >= 500)
    latencies = np.array(tally.latencies) * 1000
    print(f"load: {args.clients} clients for {args.seconds:.0f}s (+ drain), {args.workers} "
          f"workers, jobs of {args.iterations} iterations; {elapsed:.0f}s in all")
    print(f"jobs submitted {len(tally.submitted)}, finished {finished}, lost {lost}; "
          f"requests {len(latencies)}, 5xx {errors}, 429 {tally.status.get(429, 0)}; "
          f"latency p50 {np.percentile(latencies, 50):.1f} ms, "
          f"p99 {np.percentile(latencies, 99):.1f} ms, mean {statistics.fmean(latencies):.1f} ms")
    for method, label in (("POST", "submit"), ("GET", "poll")):
        times = np.array(tally.by_method[method]) * 1000
        if len(times):
            print(f"  {label} ({method}): {len(times)} requests, p50 "
                  f"{np.percentile(times, 50):.1f} ms, p99 {np.percentile(times, 99):.1f} ms")
    if lost or errors:
        print("FAILED: jobs lost or server errors", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
