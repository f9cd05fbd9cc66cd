"""``dvrl demo``: the main job, end to end, on the embedded default.

Starts the service (SQLite + in-process worker) on 127.0.0.1, uploads a real table (the
Wisconsin breast cancer data that scikit-learn ships: 569 rows, 30 measurements) through the
HTTP API, starts a job that flips 20% of the training labels on purpose, polls it, downloads the
values and prints what was found and where to look next.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
import time

import httpx
import pandas as pd


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tables() -> tuple[bytes, bytes]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, valid = frame.iloc[:400], frame.iloc[400:]
    return train.to_csv(index=False).encode(), valid.to_csv(index=False).encode()


def _start_server(port: int):
    import uvicorn

    from api.app import create_app
    from api.http_protocol import ProblemHTTPProtocol
    from service.migrate import upgrade
    from service.settings import get_settings

    upgrade(get_settings().sqlalchemy_url)
    app = create_app(listen_host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           http=ProblemHTTPProtocol, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            return server, thread
        time.sleep(0.05)
    raise RuntimeError("the service did not start")


def run_demo(port: int = 0, iterations: int = 400) -> int:
    from service.settings import get_settings

    settings = get_settings()
    if not settings.embedded:
        print("demo: DVRL_BROKER_URL is set; the demo runs the embedded default only",
              file=sys.stderr)
        return 2
    port = port or _free_port()
    server, thread = _start_server(port)
    base = f"http://127.0.0.1:{port}"
    print(f"service: {base} (embedded: SQLite in {settings.data_dir.resolve()}, in-process "
          "worker)")
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            train, valid = _tables()
            train_id = client.post("/v1/datasets", files={"file": ("breast_cancer_train.csv",
                                                                   train)}).json()["id"]
            valid_id = client.post("/v1/datasets", files={"file": ("breast_cancer_valid.csv",
                                                                   valid)}).json()["id"]
            print(f"uploaded 400 training rows ({train_id}) and 169 validation rows")
            response = client.post("/v1/jobs", json={
                "dataset_id": train_id, "target": "diagnosis",
                "validation": {"dataset_id": valid_id}, "label_noise": 0.2, "seed": 0,
                "dvrl": {"iterations": iterations}})
            response.raise_for_status()
            job = response.json()
            print(f"job {job['id']}: 20% of training labels flipped on purpose; valuing ...")
            shown = None
            while job["state"] in ("QUEUED", "RUNNING", "CANCELLING"):
                time.sleep(0.5)
                job = client.get(f"/v1/jobs/{job['id']}").json()
                progress = job["progress"]
                line = progress["phase"]
                if progress.get("total") and progress["phase"] == "training":
                    line += f": iteration {progress['iteration']}/{progress['total']}"
                if line != shown and sys.stdout.isatty():
                    print(f"\r  {line:<40}", end="", flush=True)
                elif line != shown and progress["phase"] != "training":
                    print(f"  {line}")
                shown = line
            print()
            if job["state"] != "SUCCEEDED":
                print(f"job ended {job['state']}: {job.get('error')}", file=sys.stderr)
                return 1
            csv = client.get(f"/v1/jobs/{job['id']}/values", params={"format": "csv"}).text
            values = pd.read_csv(io.StringIO(csv))
            out = os.path.abspath("dvrl-demo-values.csv")
            values.to_csv(out, index=False)
            noise = job["summary"]["label_noise"]
            lowest = client.get(f"/v1/jobs/{job['id']}/corrupted",
                                params={"page_size": 5}).json()["items"]
            print(f"\nSUCCEEDED in {job['summary']['timings']['total_s']:.1f}s. "
                  f"Of the {noise['flipped']} flipped labels, DVRL ranks "
                  f"{noise['found_at_10']:.0%} in its lowest 10%, {noise['found_at_20']:.0%} in "
                  f"its lowest 20% (random: 20%); detection AUROC {noise['auroc']:.3f}.")
            print("lowest-valued rows (the likely corrupted ones):")
            for item in lowest:
                mark = "flipped" if item["noise_injected"] else "not flipped"
                print(f"  row {item['row']:>4}  value {item['value']:.2e}  label "
                      f"{item['label']:<9} ({mark})")
            print(f"\nvalues for all {len(values)} rows: {out}")
            print("next: `dvrl serve` keeps the service up on the same data (then "
                  f"http://127.0.0.1:8000/ui/jobs/{job['id']} to see this job, /docs, "
                  f"/v1/jobs/{job['id']}, .../values, .../curves); "
                  "`dvrl value --help` values a table without the service; README.md walks "
                  "through the API")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return 0
