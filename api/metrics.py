"""Prometheus metrics for ``GET /metrics``.

Two sources, because no single process sees everything:

* requests, counted here by the ``RequestMetrics`` middleware: how many and how long, by method,
  route template (``/v1/jobs/{job_id}``, never the raw path, whose ids would make a series per
  job) and status;
* the jobs table, read when Prometheus scrapes (``JobMetrics.refresh``): jobs run on Celery
  workers elsewhere or on the embedded thread, and the table is where every runner leaves its
  state, leases and heartbeats (service.runner). From it: jobs by state, queue depth and the
  oldest queued job's age, each running worker's last heartbeat, jobs whose lease ran out, and
  finished jobs' outcomes and durations.

Finished jobs are counted as this process first sees them finished (their ``finished_at`` after
its start; at a scrape, or as it deletes one), so ``dvrl_jobs_finished_total`` and
``dvrl_job_duration_seconds`` are true counters and histograms: deleting old jobs (retention)
never lowers them, and like every counter they start again at zero with the process. Each API
process counts every job: with several replicas, aggregate with ``max`` across instances, not
``sum``.

Each app has its own registry, so several apps in one process (the tests) never collide.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.routing import Mount, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db import first_line
from service.jobs import STATES, TERMINAL, db_now
from service.models import Job

log = logging.getLogger(__name__)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
               21600.0, 86400.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# a job's finished_at is stamped just before the transaction that writes it commits; looking
# this far back (with the ids seen) catches jobs whose commit came after the previous scrape
LOOKBACK = timedelta(minutes=10)


class Metrics:
    """The app's registry and its instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.requests = Counter(
            "dvrl_http_requests", "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "dvrl_http_request_duration_seconds", "time to answer a request, to its last byte",
            ["method", "route", "status"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.jobs = JobMetrics(self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)


class RequestMetrics:
    """ASGI middleware: every HTTP request, labelled with the route template it matched or
    ``unmatched``. The router leaves API routes in the scope; mounts (``/static``) and requests
    refused before routing (a 413 from BodyLimit) are matched here against the app's templates,
    with the path as it came in."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routed: FastAPI) -> None:
        self.app = app
        self.metrics = metrics
        self.routed = routed
        self._templates: list[tuple[re.Pattern[str], str]] | None = None

    def _template(self, path: str, scope: Scope) -> str:
        route = scope.get("route")  # its template without convertors: {job_id}, not {job_id:job_id}
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str):
            return template
        if self._templates is None:
            self._templates = route_templates(self.routed)
        return next((t for pattern, t in self._templates if pattern.match(path)), "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]  # before a mount rewrites the scope
        status = 500  # what the client gets when the app raises before it answers

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe_request(scope["method"], self._template(path, scope), status,
                                         time.perf_counter() - started)


def route_templates(app: FastAPI) -> list[tuple[re.Pattern[str], str]]:
    """The documented paths (OpenAPI), the app's other routes (``/openapi.json``, ``/docs``,
    the dashboard's pages) and its mounts, as patterns with their templates."""
    documented = list(app.openapi()["paths"])
    templates = [(compile_path(path)[0], path) for path in documented]
    templates += [(route.path_regex, route.path) for route in app.routes
                  if isinstance(route, Route) and route.path not in documented]
    templates += [(compile_path(route.path + "/{path:path}")[0], route.path)
                  for route in app.routes if isinstance(route, Mount)]
    return templates


class JobMetrics:
    """What the jobs table says, refreshed at each scrape; a custom collector, so gauges of
    workers that have gone disappear instead of keeping their last value."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter(
            "dvrl_jobs_finished", "jobs that reached a final state since this process started",
            ["state", "reason"], registry=registry)
        self.duration = Histogram(
            "dvrl_job_duration_seconds", "finished jobs: from their first start to their end",
            ["state"], buckets=JOB_BUCKETS, registry=registry)
        self.queue_wait = Histogram(
            "dvrl_job_queue_wait_seconds", "finished jobs: from their creation to their first "
            "start", buckets=JOB_BUCKETS, registry=registry)
        self._since = datetime.now(UTC)
        self._seen: dict[str, datetime] = {}
        self._gauges: list[Metric] = []
        self._lock = threading.Lock()
        registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return []  # described at collection: the gauges are built from the table

    def collect(self) -> Iterable[Metric]:
        return list(self._gauges)

    def refresh(self, session: Session) -> None:
        """Read the jobs table; on a database error the gauges say only that it is down."""
        with self._lock:
            try:
                now = db_now(session)
                gauges = self._gauges_from(session, now)
                self._count_finished(session)
            except DBAPIError as exc:  # a line, not a traceback, at every scrape while down
                log.warning("metrics: the database does not answer: %s", first_line(exc))
                session.rollback()
                gauges = []
                up = 0
            else:
                up = 1
            gauges.append(_gauge("dvrl_metrics_database_up",
                                 "1 when the jobs table could be read for this scrape", up))
            self._gauges = gauges

    def _gauges_from(self, session: Session, now: datetime) -> list[Metric]:
        counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        by_state = GaugeMetricFamily("dvrl_jobs", "jobs in the database by state",
                                     labels=["state"])
        for state in STATES:
            by_state.add_metric([state], counts.get(state, 0))
        oldest = session.scalar(select(func.min(Job.created_at)).where(Job.state == "QUEUED"))
        running = Job.state.in_(("RUNNING", "CANCELLING"))
        beats = session.execute(
            select(Job.lease_holder, func.max(Job.heartbeat_at), func.count())
            .where(running, Job.lease_holder.is_not(None)).group_by(Job.lease_holder)).all()
        expired = session.scalar(select(func.count()).select_from(Job).where(
            running, Job.lease_expires_at < now)) or 0
        heartbeat = GaugeMetricFamily(
            "dvrl_worker_last_heartbeat_timestamp_seconds", "Unix time of the latest heartbeat "
            "of each worker that holds a running job", labels=["worker"])
        held = GaugeMetricFamily("dvrl_worker_jobs", "running jobs each worker holds",
                                 labels=["worker"])
        for worker, beat, count in beats:
            if beat is not None:
                heartbeat.add_metric([str(worker)], _utc(beat).timestamp())
            held.add_metric([str(worker)], count)
        return [
            by_state,
            _gauge("dvrl_queue_depth", "jobs waiting for a worker (QUEUED)",
                   counts.get("QUEUED", 0)),
            _gauge("dvrl_queue_oldest_age_seconds", "age of the oldest QUEUED job (0: none)",
                   0.0 if oldest is None else max(0.0, (now - _utc(oldest)).total_seconds())),
            heartbeat, held,
            _gauge("dvrl_jobs_lease_expired", "running jobs whose worker's lease ran out (the "
                   "worker is presumed dead; the sweeper hands the job to another)", expired),
        ]

    def count_finished(self, session: Session) -> None:
        """Count the jobs that finished since the last scrape now: before a job is deleted
        (one finished and deleted between two scrapes was never counted)."""
        with self._lock:
            self._count_finished(session)

    def _count_finished(self, session: Session) -> None:
        cutoff = max(self._since, max(self._seen.values(), default=self._since) - LOOKBACK)
        rows = session.execute(
            select(Job.id, Job.state, Job.error, Job.created_at, Job.started_at,
                   Job.finished_at)
            .where(Job.state.in_(TERMINAL), Job.finished_at >= cutoff)).all()
        for job_id, state, error, created, started, finished in rows:
            if job_id in self._seen:
                continue
            finished = _utc(finished)
            self._seen[job_id] = finished
            self.finished.labels(state, _reason(state, error)).inc()
            if started is not None:
                self.duration.labels(state).observe(
                    max(0.0, (finished - _utc(started)).total_seconds()))
                self.queue_wait.observe(max(0.0, (_utc(started) - _utc(created))
                                            .total_seconds()))
        newest = max(self._seen.values(), default=self._since)
        self._seen = {k: v for k, v in self._seen.items() if v >= newest - 2 * LOOKBACK}


def _reason(state: str, error: dict[str, Any] | None) -> str:
    """Why a job FAILED (its problem type, e.g. ``/problems/workers-died``); empty otherwise."""
    if state != "FAILED" or not error:
        return ""
    return str(error.get("type", ""))[:64]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _utc(stamp: datetime) -> datetime:
    """SQLite gives naive datetimes (UTC); PostgreSQL aware ones."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
