"""The ``dvrl`` command: the library's commands plus the service's.

    dvrl value ...        value a table (see dvrl_core.cli; a stable contract)
    dvrl remote value ... the same, run by a server (--server or DVRL_SERVER, DVRL_API_KEY;
                          see dvrl_client.cli)
    dvrl demo             start the embedded service, value a real table through its HTTP API
    dvrl serve            the API; embedded (SQLite + in-process worker) unless DVRL_DATABASE_URL
                          and DVRL_BROKER_URL are set
    dvrl worker           a Celery worker (needs DVRL_DATABASE_URL and DVRL_BROKER_URL;
                          migrates the database first, as serve does); --concurrency N: N job
                          slots, the CPUs divided between them
    dvrl migrate          bring the database schema to the newest migration
    dvrl keys create --owner NAME [--name TEXT]   a new API key (printed once, stored hashed)
    dvrl keys list                                keys: id, owner, name, created, revoked
    dvrl keys revoke ID                           a revoked key answers 401 within seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections.abc import Sequence

LIBRARY_COMMANDS = ("value",)
EXIT_ERROR = 2


def _port(text: str, lowest: int = 1) -> int:
    """A TCP port number, for argparse (``lowest`` 0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is {lowest} to 65535, not {port}")
    return port


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _loglevel(text: str) -> str:
    """A logging level's name, any case, for argparse."""
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIBRARY_COMMANDS:
        from dvrl_core.cli import main as library_main

        return library_main(argv)
    if argv and argv[0] == "remote":
        from dvrl_client.cli import main as remote_main

        return remote_main(argv[1:])
    parser = argparse.ArgumentParser(prog="dvrl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("value", help="value a table (dvrl value --help)")
    commands.add_parser("remote", help="value a table on a server (dvrl remote value --help)")
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000, help="1 to 65535 (default 8000)")
    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--queues", help="comma-separated queues (default: the CPU queue; "
                        "--gpu: the GPU queue and the CPU queue)")
    worker.add_argument("--gpu", action="store_true", help="a GPU worker")
    worker.add_argument("--loglevel", type=_loglevel, default="INFO",
                        help=f"{', '.join(LOG_LEVELS)} (default INFO)")
    worker.add_argument("--concurrency", type=int, help="job slots on this machine: worker "
                        "processes with the CPUs divided between them (default: "
                        "DVRL_WORKER_CONCURRENCY, 1)")
    worker.add_argument("--hostname", help="Celery node name (default: celery@HOST; slots: "
                        "slotI@HOST)")
    commands.add_parser("migrate", help="apply database migrations")
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="a new key, printed once")
    create.add_argument("--owner", required=True, help="who the key's datasets and jobs "
                        "belong to (letters, digits, . _ @ -)")
    create.add_argument("--name", default="", help="a note, e.g. what uses the key")
    key_commands.add_parser("list", help="all keys (never the keys themselves)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    demo = commands.add_parser("demo", help="value a real table through the embedded service")
    demo.add_argument("--port", type=lambda text: _port(text, lowest=0), default=0,
                      help="default (0): a free port")
    demo.add_argument("--iterations", type=int, default=400)
    args = parser.parse_args(argv)
    if args.command in ("serve", "demo"):  # the embedded worker runs jobs in this process
        _thread_env()

    from dvrl_core.runtime import quiet_known_warnings, tune_allocator

    tune_allocator()
    quiet_known_warnings()
    problem = _setup_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    try:
        if args.command == "serve":
            return _serve(args.host, args.port)
        if args.command == "worker":
            return _worker(args)
        if args.command == "migrate":
            return _migrate(report=True)
        if args.command == "keys":
            return _keys(args)
        from service.demo import run_demo

        return run_demo(args.port, args.iterations)
    except BrokenPipeError:  # `dvrl keys list | head`
        from dvrl_core.cli import reader_left

        return reader_left()


def _setup_problem(args: argparse.Namespace) -> str | None:
    """What in the machine's setup stops the command, in a line a user can act on: a database
    URL that is not one, a data folder that cannot be made, a database that does not answer,
    keys asked of a data folder with no database; None when the command can start. (The
    worker says itself what it needs.)"""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from service.db import engine_for
    from service.settings import get_settings

    settings = get_settings()
    if args.command == "worker" and (settings.embedded or not settings.database_url):
        return None
    if settings.database_url:
        try:
            make_url(settings.database_url)
        except (ArgumentError, ValueError):
            return ("DVRL_DATABASE_URL is not a database URL (not shown: it may hold a "
                    "password); e.g. postgresql://postgres@127.0.0.1:5432/postgres")
    elif args.command == "keys" and args.keys_command != "create" \
            and not settings.database_file.exists():
        return (f"no database at {_database_name()}: set DVRL_DATA_DIR to the data folder of "
                "the service whose keys these are (or DVRL_DATABASE_URL)")
    try:
        url = settings.sqlalchemy_url  # the embedded default makes its folder here
    except OSError as exc:
        return (f"{exc.filename}: {exc.strerror or exc} (DVRL_DATA_DIR names the folder of the "
                "embedded database)")
    try:
        with engine_for(url).connect():
            pass
    except DBAPIError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        return f"the database at {_database_name()} cannot be used: {first}"
    except ImportError as exc:  # mysql://: a dialect whose driver is not installed
        return (f"the database at {_database_name()} needs a driver this install does not have "
                f"({exc}); the service runs on PostgreSQL (postgresql://) or the embedded SQLite")
    if args.command == "keys" and args.keys_command != "create":
        from service.migrate import revision

        if revision(url) is None:  # not migrated here: another application's, or a new one
            return (f"the database at {_database_name()} holds no tables of this service: name "
                    "the service's own database (DVRL_DATABASE_URL); `dvrl migrate` prepares a "
                    "new one")
    return None


def _database_name() -> str:
    """Where this command's database is, its password hidden."""
    from sqlalchemy.engine import make_url

    from service.settings import get_settings

    settings = get_settings()
    if not settings.database_url:
        return f"SQLite {settings.database_file.resolve()}"
    return make_url(settings.database_url).render_as_string(hide_password=True)


def _migrate(report: bool = False) -> int:
    """Bring the database to the newest schema; ``report``: say what was done (``dvrl
    migrate``)."""
    from service.migrate import newest, revision, upgrade
    from service.settings import get_settings

    url = get_settings().sqlalchemy_url
    before = revision(url) if report else None
    upgrade(url)
    if report:
        done = "already at" if before == newest() else \
            "created at" if before is None else f"upgraded from {before} to"
        print(f"{_database_name()}: schema {done} revision {newest()}", file=sys.stderr)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from service import keys
    from service.db import session_scope
    from service.errors import NotFound

    _migrate()
    with session_scope() as session:
        if args.keys_command == "create":
            try:
                key, token = keys.create_key(session, args.owner, args.name)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_ERROR
            print(token)
            print(f"key {key.id} for owner {key.owner!r}: shown only now, stored as a hash in "
                  f"{_database_name()}; send it as 'Authorization: Bearer <key>'",
                  file=sys.stderr)
        elif args.keys_command == "list":
            print(f"{'id':<14}{'owner':<24}{'created':<22}{'revoked':<22}name")
            for key in keys.list_keys(session):
                revoked = f"{key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "-"
                print(f"{key.id:<14}{key.owner:<24}{key.created_at:%Y-%m-%d %H:%M:%S}   "
                      f"{revoked:<22}{key.name}")
        else:
            try:
                key, already = keys.revoke_key(session, args.key_id)
            except NotFound as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_ERROR
            when = f" already, at {already:%Y-%m-%d %H:%M:%S} UTC" if already else ""
            print(f"key {key.id} of {key.owner!r} revoked{when}", file=sys.stderr)
    return 0


def _serve(host: str, port: int) -> int:
    import uvicorn

    from api.app import LOOPBACK, auth_required, create_app
    from api.http_protocol import ProblemHTTPProtocol
    from service import keys, webhook_secrets
    from service.db import session_scope
    from service.settings import get_settings

    settings = get_settings()
    _migrate()
    loopback = host in LOOPBACK
    require_keys = auth_required(settings, host)
    with session_scope() as session:
        active = keys.active_keys(session)
    try:  # a webhook key file that was emptied is said now, not at the first webhook
        webhook_secrets.service_key(settings)
    except webhook_secrets.WebhooksNotConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not loopback and (not require_keys or (settings.embedded and active == 0)):
        why = "DVRL_AUTH=off" if not require_keys else "no API key exists"
        print(f"error: refusing to serve on {host} ({why}): anyone who can reach it could "
              "read and run everything. Create a key with 'dvrl keys create --owner NAME' "
              "(and leave DVRL_AUTH at auto), or serve on 127.0.0.1", file=sys.stderr)
        return EXIT_ERROR
    if require_keys and active == 0:
        print("dvrl: no API key exists yet; every request will be refused until one is "
              "created with 'dvrl keys create --owner NAME'", file=sys.stderr)
    mode = "embedded (SQLite at " + str(settings.data_dir) + ", in-process worker)" \
        if settings.embedded else "PostgreSQL + Celery"
    auth = "API keys required" if require_keys else "no API key needed on 127.0.0.1"
    try:  # bound before it is announced: a port in use is said, not "serving on" it
        listening = _listen(host, port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    print(f"dvrl: serving on http://{shown}:{port} ({mode}; {auth}); dashboard at /ui, API docs "
          "at /docs", file=sys.stderr)
    config = uvicorn.Config(create_app(listen_host=host), http=ProblemHTTPProtocol,
                            log_level="warning")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shut down cleanly, then passed it on
        uvicorn.Server(config).run(sockets=listening)
    return 0


def _listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` (as asyncio's create_server binds them for
    uvicorn: "" or a name may have several; an IPv6 socket takes IPv6 only)."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            listening = socket.socket(family, kind, proto)
            bound.append(listening)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listening.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listening.bind(address)
            listening.set_inheritable(True)
    except OSError:
        for listening in bound:
            listening.close()
        raise
    return bound


def _thread_env() -> None:
    """Thread limits in the environment before torch and LightGBM load (see dvrl_core.threads)."""
    from dvrl_core.threads import available_cpus, set_thread_env
    from service.settings import get_settings

    set_thread_env(get_settings().worker_threads or available_cpus())


def _worker(args: argparse.Namespace) -> int:
    from dvrl_core.errors import ConfigError
    from dvrl_core.threads import apply_thread_budget, cpu_limit, split_budget
    from service.settings import get_settings
    from worker.slots import SUPERVISOR_ENV, follow_supervisor, run_slots

    settings = get_settings()
    if settings.embedded or not settings.database_url:
        print("error: dvrl worker needs DVRL_DATABASE_URL (PostgreSQL) and DVRL_BROKER_URL "
              "(Redis); without them `dvrl serve` runs jobs in-process", file=sys.stderr)
        return EXIT_ERROR
    queues = args.queues or (f"{settings.gpu_queue},{settings.cpu_queue}" if args.gpu
                             else settings.cpu_queue)
    known = (settings.cpu_queue, settings.gpu_queue)
    names = [name.strip() for name in queues.split(",")]
    unknown = [name for name in names if name not in known]
    if unknown:  # a worker on no queue of the service's would wait for jobs that never come
        print(f"error: --queues: {', '.join(map(repr, unknown))} "
              f"{'is not a queue' if len(unknown) == 1 else 'are not queues'} of the service's; "
              f"jobs are sent to {known[0]} (CPU) and {known[1]} (GPU)", file=sys.stderr)
        return EXIT_ERROR
    queues = ",".join(dict.fromkeys(names))
    slots = settings.worker_concurrency if args.concurrency is None else args.concurrency
    try:
        threads = split_budget(slots, settings.worker_threads)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if SUPERVISOR_ENV not in os.environ:  # a slot's supervisor has migrated already
        _migrate()  # as `dvrl serve` does: a worker on a new database finds its tables
    if slots > 1:  # fresh processes, one job each: nothing forked after torch or OpenMP start
        return run_slots(slots, threads, queues, args.loglevel)
    if not follow_supervisor():
        return 0  # started by a parent that is gone already
    apply_thread_budget(threads)
    name = args.hostname or "celery@%h"
    print(f"dvrl worker {name.replace('%h', socket.gethostname())}: {threads} "
          f"thread{'s' if threads != 1 else ''} ({cpu_limit().describe()}), queues {queues}",
          file=sys.stderr, flush=True)

    from service.dispatch import Sweeper
    from service.webhooks import start_sender
    from worker.tasks import app

    Sweeper(settings).start()  # lost messages and dead workers' jobs are sent again
    start_sender(settings)  # webhook events: this worker's jobs' at once, anyone's when due
    # solo pool: jobs run in the worker's own process, never in a child forked after LightGBM's
    # OpenMP or CUDA started (both hang in such children)
    app.worker_main(["worker", "--pool=solo", "--concurrency=1", f"--queues={queues}",
                     f"--hostname={name}", f"--loglevel={args.loglevel}", "--without-gossip",
                     "--without-mingle"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
