"""Service figures: upload throughput, poll latency under load, Adult job time, result paging.

    python bench/api.py [--upload-mb 100] [--clients 50] [--poll-seconds 15] [--rows 1000000]
                        [--only upload|job|paging|bombs]

Runs a real API server (uvicorn, one process) and a real Celery worker against the local
PostgreSQL (database ``dvrl_bench``, created if missing) and Redis (db 14). Prints:
* upload: MB/s for a generated CSV of ``--upload-mb`` MB, and the API process's peak memory
  growth during it, as a multiple of the file size;
* poll latency p50/p99 of GET /v1/jobs/{id} from ``--clients`` concurrent clients while the
  worker is busy with a job;
* Adult protocol job (1,000 training rows, 400 validation rows, label_noise 0.2, defaults):
  seconds from POST to SUCCEEDED;
* paging through ``--rows`` stored result rows with page_size 10,000, and the CSV download;
* upload bombs (each at or under the upload limit, built in a temporary folder): file size,
  status, problem type, seconds and the API process's peak memory growth for each.
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
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from harness import PG_URL, REDIS_URL, api_key, free_port, fresh_database  # noqa: E402

OWNER = "bench"
HEADERS: dict[str, str] = {}  # the API key, once created





def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _upload(client: httpx.Client, path: Path) -> dict:
    with open(path, "rb") as handle:
        response = client.post("/v1/datasets", files={"file": (path.name, handle)})
    response.raise_for_status()
    return response.json()


def bench_upload(client: httpx.Client, server_pid: int, megabytes: int, folder: Path) -> None:
    path = folder / "upload.csv"
    rng = np.random.default_rng(0)
    rows = int(megabytes * 1e6 / 200)  # about 200 bytes a row
    frame = pd.DataFrame(np.round(rng.standard_normal((rows, 20)), 6),
                         columns=[f"x{j}" for j in range(20)])
    frame["label"] = rng.integers(0, 2, rows)
    frame.to_csv(path, index=False)
    size_mb = path.stat().st_size / 1e6
    before = _rss_mb(server_pid)
    started = time.perf_counter()
    dataset = _upload(client, path)
    seconds = time.perf_counter() - started
    growth = _peak_rss_mb(server_pid) - before
    print(f"upload: {size_mb:.0f} MB CSV ({dataset['rows']} rows) in {seconds:.1f}s = "
          f"{size_mb / seconds:.1f} MB/s; API peak memory growth {growth:.0f} MB = "
          f"{growth / size_mb:.2f}x the file")


async def _poll(base: str, job_id: str, seconds: float, think: float,
                latencies: list[float], index: int = 0) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=HEADERS) as client:
        for _ in range(3):  # warm-up: connections and server threads exist before measuring
            (await client.get(f"/v1/jobs/{job_id}")).raise_for_status()
        # independent clients are not in step: a random start, and +-50% on the interval
        rng = np.random.default_rng(index)
        await asyncio.sleep(1.0 + rng.uniform(0, think))
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(f"/v1/jobs/{job_id}")
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))


def bench_polling(client: httpx.Client, base: str, clients: int, seconds: float,
                  ids: tuple[str, str]) -> None:
    job = client.post("/v1/jobs", json={
        "dataset_id": ids[0], "target": "income", "validation": {"dataset_id": ids[1]},
        "dvrl": {"iterations": 100_000}}).json()
    while client.get(f"/v1/jobs/{job['id']}").json()["state"] != "RUNNING":
        time.sleep(0.2)
    for think in (1.0, 0.0):
        latencies: list[float] = []

        async def run(think: float, latencies: list[float]) -> None:
            await asyncio.gather(*[_poll(base, job["id"], seconds, think, latencies, i)
                                   for i in range(clients)])

        asyncio.run(run(think, latencies))
        ordered = sorted(latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
        pace = f"each polling every {think:.0f}s" if think else "polling back to back"
        print(f"poll: {clients} concurrent clients {pace}, worker busy, {len(ordered)} requests "
              f"in {seconds:.0f}s ({len(ordered) / seconds:.0f}/s): p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms")
    client.post(f"/v1/jobs/{job['id']}:cancel")
    while client.get(f"/v1/jobs/{job['id']}").json()["state"] != "CANCELLED":
        time.sleep(0.2)


def bench_adult_job(client: httpx.Client, folder: Path) -> tuple[str, str]:
    from adult_protocol import adult_protocol

    _, _, raw = adult_protocol(0)
    # the service injects the noise itself: upload the clean training rows
    from adult_protocol import read_adult

    full_train, _ = read_adult()
    rng = np.random.default_rng(0)
    train = full_train.iloc[rng.choice(len(full_train), 1000, replace=False)]
    train.to_csv(folder / "adult_train.csv", index=False)
    raw["valid"].to_csv(folder / "adult_valid.csv", index=False)
    ids = (_upload(client, folder / "adult_train.csv")["id"],
           _upload(client, folder / "adult_valid.csv")["id"])
    started = time.perf_counter()
    job = client.post("/v1/jobs", json={
        "dataset_id": ids[0], "target": "income", "validation": {"dataset_id": ids[1]},
        "label_noise": 0.2, "seed": 0}).json()
    while job["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        time.sleep(0.5)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    seconds = time.perf_counter() - started
    noise = (job.get("summary") or {}).get("label_noise", {})
    print(f"adult job: POST to {job['state']} in {seconds:.1f}s (2000 iterations, removal "
          f"curves); found@20 {noise.get('found_at_20', float('nan')):.3f}, AUROC "
          f"{noise.get('auroc', float('nan')):.3f}")
    return ids


def bench_paging(client: httpx.Client, rows: int) -> None:
    from dvrl_core.result import ValuationResult
    from service import jobs
    from service.db import session_scope
    from service.models import Job
    from service.results import write_values

    rng = np.random.default_rng(0)
    result = ValuationResult(values=rng.random(rows), ids=np.arange(rows),
                             labels=np.where(rng.random(rows) < 0.5, "a", "b"),
                             reward_trace=np.zeros(1))
    with session_scope() as session:
        job = Job(id=f"bench-{rows}", owner=OWNER, state="RUNNING", spec={}, progress={},
                  cancel_requested=False, attempts=1, lease_holder="bench")
        session.add(job)
        session.commit()
        started = time.perf_counter()
        write_values(session, job.id, result, 0.1, None)
        jobs.finish(session, job.id, "bench", "SUCCEEDED", summary={},
                    curves={"reward_trace": {}})
        session.commit()
        write_s = time.perf_counter() - started
    started = time.perf_counter()
    token, seen = None, 0
    while True:
        params = {"page_size": 10_000} | ({"page_token": token} if token else {})
        page = client.get(f"/v1/jobs/bench-{rows}/values", params=params).json()
        seen += len(page["items"])
        token = page["next_page_token"]
        if token is None:
            break
    page_s = time.perf_counter() - started
    started = time.perf_counter()
    with client.stream("GET", f"/v1/jobs/bench-{rows}/values", params={"format": "csv"}) as r:
        size = sum(len(chunk) for chunk in r.iter_bytes())
    csv_s = time.perf_counter() - started
    print(f"results: {rows} rows stored in {write_s:.1f}s; paged in value order "
          f"({seen} rows, pages of 10,000) in {page_s:.1f}s = {seen / page_s:,.0f} rows/s; "
          f"CSV download {size / 1e6:.0f} MB in {csv_s:.1f}s")


# upload bombs: files that decode to far more than they weigh, each at or under the upload limit


def _write_parquet(path: Path, table: pa.Table, **options) -> None:
    pq.write_table(table, path, **options)


def _zeros_table(columns: int, rows: int) -> pa.Table:
    zeros = pa.array(np.zeros(rows))  # one array, shared by every column
    return pa.table({f"c{j}": zeros for j in range(columns)})


def _dictionary_string(path: Path, value_bytes: int, rows: int) -> None:
    """One long string as the only dictionary value, on every row; stored without an Arrow
    schema, so that it reads back as plain text (value_bytes x rows once decoded)."""
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)),
                                            pa.array(["a" * value_bytes]))
    _write_parquet(path, pa.table({"s": column, "x": np.zeros(rows)}), compression="zstd",
                   store_schema=False)


def _deep_struct(path: Path, depth: int) -> None:
    column = pa.array(np.zeros(1000))
    for _ in range(depth):
        column = pa.StructArray.from_arrays([column], ["f"])
    _write_parquet(path, pa.table({"deep": column}), compression="zstd")


def _long_lists(path: Path, rows: int, per_row: int) -> None:
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * per_row)
    column = pa.ListArray.from_arrays(offsets, pa.array(np.zeros(rows * per_row)))
    _write_parquet(path, pa.table({"values": column}), compression="zstd")


def _one_row_group(path: Path, columns: int, rows: int) -> None:
    column = pa.array(np.random.default_rng(0).standard_normal(rows))  # incompressible
    table = pa.table({f"x{j}": column for j in range(columns)})
    _write_parquet(path, table, compression="none", row_group_size=rows)


def _repeated(path: Path, unit: bytes, size: int, prefix: bytes = b"") -> None:
    block = unit * ((8 << 20) // len(unit))
    with open(path, "wb") as handle:
        handle.write(prefix)
        for _ in range(size // len(block)):
            handle.write(block)


BOMBS: dict[str, tuple[str, Callable[[Path], None]]] = {
    # the measured one: 3,000 all-zero columns x 200,000 rows, run-length encoded, zstd
    "RLE wide 3000x200k": ("p", lambda p: _write_parquet(p, _zeros_table(3000, 200_000),
                                                         compression="zstd")),
    "RLE wide 10000x200k": ("p", lambda p: _write_parquet(p, _zeros_table(10_000, 200_000),
                                                          compression="zstd")),
    "RLE wide at the cell limit": ("p", lambda p: _write_parquet(
        p, _zeros_table(10_000, 20_000), compression="zstd")),
    "plain wide at the cell limit": ("p", lambda p: _write_parquet(
        p, _zeros_table(10_000, 20_000), compression="zstd", use_dictionary=False)),
    "dictionary string 50MB x 1M": ("p", lambda p: _dictionary_string(p, 50 << 20, 1_000_000)),
    "dictionary string 64MiB x 63": ("p", lambda p: _dictionary_string(p, (64 << 20) - 64, 63)),
    "one 1GiB string": ("p", lambda p: _write_parquet(p, pa.table({"s": ["a" * (1 << 30)]}),
                                                      compression="zstd")),
    "one 120MiB string": ("p", lambda p: _write_parquet(p, pa.table({"s": ["a" * (120 << 20)]}),
                                                        compression="zstd")),
    "tiny row groups 95k x 3": ("p", lambda p: _write_parquet(
        p, _zeros_table(3, 95_000), compression="zstd", row_group_size=1)),
    "tiny row groups 100k x 3": ("p", lambda p: _write_parquet(
        p, _zeros_table(3, 100_000), compression="zstd", row_group_size=1)),
    "one row group 1GB": ("p", lambda p: _one_row_group(p, 25, 5_000_000)),
    "deep struct (98 levels)": ("p", lambda p: _deep_struct(p, 98)),  # pyarrow reads 98
    "long lists 4 x 50M": ("p", lambda p: _long_lists(p, 4, 50_000_000)),
    "CSV one 900MB line of 0,": ("c", lambda p: _repeated(p, b"0,", 900 << 20)),
    "CSV one 900MB line of a": ("c", lambda p: _repeated(p, b"a", 900 << 20)),
    "CSV one 900MB quoted cell": ("c", lambda p: _repeated(p, b"x", 900 << 20, b'a,b\n1,"')),
    "CSV header of 2.5M names": ("c", lambda p: p.write_bytes(b",".join(
        b"column_%07d" % j for j in range(2_500_000)) + b"\n1\n")),
}


def _bomb_server(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A fresh API process, warmed up by one request: its peak memory starts from here (one
    process a bomb, because an allocator keeps what an earlier upload freed)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{base}/v1/datasets", headers=HEADERS).raise_for_status()
            break
        except httpx.TransportError:
            time.sleep(0.2)
    return server, base


def _upload_bomb(env: dict[str, str], path: Path) -> tuple[httpx.Response, float, float]:
    """The API's answer to ``path``, the seconds it took, and the growth of the API process's
    peak resident memory (MB) over its resident memory before the upload."""
    server, base = _bomb_server(env)
    try:
        before = _rss_mb(server.pid)
        started = time.perf_counter()
        with open(path, "rb") as handle, httpx.Client(base_url=base, timeout=600,
                                                      headers=HEADERS) as client:
            response = client.post("/v1/datasets", files={"file": (path.name, handle)})
            seconds = time.perf_counter() - started
            growth = _peak_rss_mb(server.pid) - before
            if not response.is_error:
                client.delete(f"/v1/datasets/{response.json()['id']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return response, seconds, growth


def bench_bombs(env: dict[str, str], folder: Path, limit: int) -> None:
    print(f"{'bomb':32} {'file MB':>9} {'status':>6} {'problem':12} {'s':>6} "
          f"{'API peak growth MB':>18}  detail")
    for name, (kind, build) in BOMBS.items():
        path = folder / ("bomb.parquet" if kind == "p" else "bomb.csv")
        build(path)
        size = path.stat().st_size
        assert size <= limit, (name, size)
        try:
            response, seconds, growth = _upload_bomb(env, path)
        finally:
            path.unlink()
        body = response.json()
        problem = body.get("type", "").rsplit("/", 1)[-1] if response.is_error else "-"
        detail = body.get("detail", "") if response.is_error else f"{body['rows']} rows stored"
        print(f"{name:32} {size / 1e6:9.2f} {response.status_code:6} {problem:12} "
              f"{seconds:6.1f} {growth:18.0f}  {detail[:70]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--poll-seconds", type=float, default=15)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("upload", "job", "paging", "bombs"),
                        help="measure one part only (polling needs the job)")
    args = parser.parse_args()
    fresh_database()
    env = os.environ | {"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL}
    os.environ.update({"DVRL_DATABASE_URL": PG_URL, "DVRL_BROKER_URL": REDIS_URL})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port",
                                   str(port)], cwd=ROOT, env=env)
        worker = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "worker", "--loglevel",
                                   "WARNING"], cwd=ROOT, env=env)
        try:
            HEADERS["Authorization"] = f"Bearer {api_key(OWNER, 'bench/api.py')}"
            with httpx.Client(base_url=base, timeout=600, headers=HEADERS) as client:
                for _ in range(300):
                    try:
                        client.get("/healthz")
                        break
                    except httpx.TransportError:
                        time.sleep(0.2)
                if args.only in (None, "upload"):
                    bench_upload(client, server.pid, args.upload_mb, folder)
                if args.only in (None, "job"):
                    ids = bench_adult_job(client, folder)
                    bench_polling(client, base, args.clients, args.poll_seconds, ids)
                if args.only in (None, "paging"):
                    bench_paging(client, args.rows)
                if args.only in (None, "bombs"):
                    from service.settings import Settings

                    bench_bombs(env, folder, Settings().max_upload_bytes)
        finally:
            for process in (worker, server):
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
