"""The ``dvrl`` command: the library's commands plus the service's.

    dvrl value ...        value a table (see dvrl_core.cli; a stable contract)
    dvrl demo             start the embedded service, value a real table through its HTTP API
    dvrl serve            the API; embedded (SQLite + in-process worker) unless DVRL_DATABASE_URL
                          and DVRL_BROKER_URL are set
    dvrl worker           a Celery worker (needs DVRL_DATABASE_URL and DVRL_BROKER_URL)
    dvrl migrate          bring the database schema to the newest migration
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

LIBRARY_COMMANDS = ("value",)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIBRARY_COMMANDS:
        from dvrl_core.cli import main as library_main

        return library_main(argv)
    parser = argparse.ArgumentParser(prog="dvrl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("value", help="value a table (dvrl value --help)")
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", help="comma-separated queues (default: the CPU queue; "
                        "--gpu: the GPU queue and the CPU queue)")
    worker.add_argument("--gpu", action="store_true", help="a GPU worker")
    worker.add_argument("--loglevel", default="INFO")
    commands.add_parser("migrate", help="apply database migrations")
    demo = commands.add_parser("demo", help="value a real table through the embedded service")
    demo.add_argument("--port", type=int, default=0, help="default: a free port")
    demo.add_argument("--iterations", type=int, default=400)
    args = parser.parse_args(argv)

    from dvrl_core.runtime import tune_allocator

    tune_allocator()
    if args.command == "serve":
        return _serve(args.host, args.port)
    if args.command == "worker":
        return _worker(args)
    if args.command == "migrate":
        return _migrate()
    from service.demo import run_demo

    return run_demo(args.port, args.iterations)


def _migrate() -> int:
    from service.migrate import upgrade
    from service.settings import get_settings

    upgrade(get_settings().sqlalchemy_url)
    return 0


def _serve(host: str, port: int) -> int:
    import uvicorn

    from api.app import create_app
    from service.settings import get_settings

    settings = get_settings()
    _migrate()
    mode = "embedded (SQLite at " + str(settings.data_dir) + ", in-process worker)" \
        if settings.embedded else "PostgreSQL + Celery"
    print(f"dvrl: serving on http://{host}:{port} ({mode}); API docs at /docs", file=sys.stderr)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from service.settings import get_settings

    settings = get_settings()
    if settings.embedded or not settings.database_url:
        print("error: dvrl worker needs DVRL_DATABASE_URL (PostgreSQL) and DVRL_BROKER_URL "
              "(Redis); without them `dvrl serve` runs jobs in-process", file=sys.stderr)
        return 2
    queues = args.queues or (f"{settings.gpu_queue},{settings.cpu_queue}" if args.gpu
                             else settings.cpu_queue)
    import os

    import torch

    from worker.tasks import app

    torch.set_num_threads(settings.worker_threads or max(1, (os.cpu_count() or 2) - 1))
    # solo pool: jobs run in the worker's own process, never in a child forked after LightGBM's
    # OpenMP or CUDA started (both hang in such children)
    app.worker_main(["worker", "--pool=solo", f"--queues={queues}",
                     f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
