"""Sending jobs to workers. Only the dispatch differs between modes; the runner is the same.

* Celery (``DVRL_BROKER_URL`` set): a message with the job id alone, by task name, to the CPU or
  GPU queue; acks are late, so a message is not lost with a killed worker.
* Embedded (no broker): an in-process thread runs queued jobs one at a time, oldest first,
  and takes over jobs whose lease ran out (a process that died mid-job).

An ensemble job (service.members) is sent as one message per member (``dvrl.run_member``), so
that its members run on as many workers as are free; the embedded thread runs them one after
another (they still resume one by one, and the last one's combination runs on the same thread).

Webhook events are sent by a ``service.webhooks.WebhookSender`` thread in the same processes
(every Celery worker, and the embedded service).

A sweeper (in every Celery worker process, and in the embedded worker) finds jobs whose message
may be lost (a restarted Redis keeps nothing) or whose worker died, and sends them again: the
conditional claim makes duplicates harmless. It also deletes results older than
``results_ttl_days`` when that is set.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

from celery import Celery
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from . import jobs, members, retention, webhooks
from .db import first_line, session_scope
from .models import Job
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
TASK_NAME = "dvrl.run_job"
MEMBER_TASK_NAME = "dvrl.run_member"


def make_celery(settings: Settings) -> Celery:
    app = Celery("dvrl", broker=settings.broker_url)
    # late acks + prefetch 1: a message is acknowledged only after its job ended, and a worker
    # holds one job at a time; the visibility timeout outlasts the longest job
    visibility = settings.max_time_budget_s + 3600
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=settings.cpu_queue, broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility,
                                  "socket_connect_timeout": 5},
        # a submission with the broker down gives up within a few seconds (the job is saved;
        # the sweeper sends it later) instead of holding the request
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        task_ignore_result=True, worker_hijack_root_logger=False,
    )
    return app


@lru_cache
def celery_app() -> Celery:
    return make_celery(get_settings())


class EmbeddedWorker:
    """Runs queued jobs in a background thread of the API process (the embedded default)."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dvrl-embedded-worker",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    def _next_job(self) -> tuple[str, bool] | None:
        """The oldest job's next piece of work: (a job id, False) to run or combine it, or
        (a member id, True) to run one of its members."""
        with session_scope() as session:
            orphaned = and_(Job.state.in_(("RUNNING", "CANCELLING")),
                            Job.lease_expires_at < jobs.db_now(session))
            queued = and_(Job.state == "QUEUED", Job.ensemble == 1)
            job = session.execute(select(Job.id, Job.created_at).where(or_(queued, orphaned))
                                  .order_by(Job.created_at).limit(1)).first()
            member = members.next_due(session)
        if member is not None and (job is None or member[1] < job[1]):
            return member[0], True
        return None if job is None else (job[0], False)

    def _loop(self) -> None:
        from dvrl_core.threads import apply_thread_budget

        apply_thread_budget(get_settings().worker_threads)  # before torch runs anything here
        from .member_runner import run_member
        from .runner import run_job

        while not self._stop.is_set():
            try:
                work = self._next_job()
                retention.expire(get_settings())
            except DBAPIError:
                log.warning("embedded worker: database unavailable", exc_info=True)
                work = None
            if work is None:
                self._wake.wait(timeout=2.0)
                self._wake.clear()
                continue
            key, member = work
            try:
                run_member(key) if member else run_job(key)
            except Exception:  # keep the worker alive whatever one job does
                log.exception("embedded worker: %s %s", "member" if member else "job", key)


_embedded: EmbeddedWorker | None = None
_embedded_sender: webhooks.WebhookSender | None = None


def start_embedded_worker() -> EmbeddedWorker:
    """The in-process worker thread, and a webhook sender thread beside it (so that a long
    job does not hold back its own progress events or other jobs' retries)."""
    global _embedded, _embedded_sender
    if _embedded is None:
        _embedded = EmbeddedWorker()
        _embedded.start()
        _embedded_sender = webhooks.start_sender()
    return _embedded


def stop_embedded_worker() -> None:
    global _embedded, _embedded_sender
    if _embedded is not None:
        _embedded.stop()
        _embedded = None
    if _embedded_sender is not None:
        _embedded_sender.stop()
        _embedded_sender = None


def waiting_queues(settings: Settings) -> frozenset[str]:
    """The service's queues that hold messages no worker has taken yet. A QUEUED job of such a
    queue is not sent again: its message is most likely among them, and a queue no worker takes
    from (the GPU queue with no GPU worker) would gather one more copy at every sweep. Once
    the queue is empty, a job still QUEUED is sent again. Empty in embedded mode, and where the
    broker does not say (every due job is then sent, as before)."""
    if settings.embedded:
        return frozenset()
    waiting = set()
    try:
        with celery_app().connection_for_read() as connection:
            channel = connection.default_channel
            for queue in {settings.cpu_queue, settings.gpu_queue}:
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                except Exception:  # noqa: BLE001 - Redis keeps no empty queue: "no queue"
                    continue
                if declared.message_count:
                    waiting.add(queue)
    except Exception as exc:  # noqa: BLE001 - the broker is away: send every due job
        log.warning("sweep: the broker's queues could not be read (%s)", first_line(exc))
        return frozenset()
    return frozenset(waiting)


def send(job_id: str, device: str, settings: Settings | None = None,
         task: str = TASK_NAME) -> None:
    """Hand a committed QUEUED job (or, with ``MEMBER_TASK_NAME``, an ensemble member) to a
    worker (raises when the broker cannot be reached)."""
    settings = settings or get_settings()
    if settings.embedded:
        if _embedded is not None:
            _embedded.notify()
        return
    celery_app().send_task(task, args=[job_id], queue=settings.queue_for(device))


def submit(session: Session, job_id: str, device: str) -> bool:
    """Send a newly committed job (an ensemble: each of its members); with the broker away,
    leave it to the sweeper (the job is safe in the database) and return False. A submission
    never fails for want of a broker."""
    member_ids = members.ids(session, job_id)
    try:
        for member_id in member_ids:
            send(member_id, device, task=MEMBER_TASK_NAME)
        if not member_ids:
            send(job_id, device)
        return True
    except Exception as exc:  # kombu / redis errors of every kind: the broker is unreachable
        log.warning("job %s: broker unavailable (%s); the sweeper will send it",
                    job_id, first_line(exc))
        session.execute(update(Job).where(Job.id == job_id, Job.state == "QUEUED")
                        .values(dispatched_at=None))  # due at the next sweep
        session.commit()
        members.undispatched(session, job_id)
        return False


def sweep(settings: Settings | None = None) -> list[str]:
    """Send again every job and ensemble member whose message may be lost or whose worker
    died; expire old results. Returns the ids sent."""
    settings = settings or get_settings()
    waiting = waiting_queues(settings)
    with session_scope() as session:
        due = jobs.due_for_dispatch(session, settings, waiting)
        due_members = members.due_for_dispatch(session, settings, waiting)
    for job_id, device in due:
        log.warning("sweep: sending job %s again (message lost or worker gone)", job_id)
        send(job_id, device, settings)
    for member_id, device in due_members:
        log.warning("sweep: sending ensemble member %s again (message lost or worker gone)",
                    member_id)
        send(member_id, device, settings, task=MEMBER_TASK_NAME)
    retention.expire(settings)
    return [key for key, _ in due + due_members]


class Sweeper:
    """Runs ``sweep`` every ``sweep_interval_s`` in a daemon thread (of a Celery worker)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dvrl-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                sweep(self.settings)
            except Exception:  # the database or broker is away: the next round tries again
                log.warning("sweep failed", exc_info=True)
