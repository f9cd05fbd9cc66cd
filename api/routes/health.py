"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.db import first_line
from service.dispatch import celery_app

from ..deps import SessionDep, SettingsDep
from ..problems import problem

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", summary="The database (and broker) answer")
def readyz(session: SessionDep, settings: SettingsDep):
    """503 names the dependency that does not answer (``database`` or ``broker``) and nothing
    else: hosts, users and error texts stay in the service log."""
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach a dependency means not ready
        # a line each time, not a traceback: probes come every few seconds while it is down
        log.warning("readyz: the database does not answer: %s", first_line(exc))
        return _not_ready("database")
    if not settings.embedded:
        try:
            with celery_app().connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            log.warning("readyz: the broker does not answer: %s", first_line(exc))
            return _not_ready("broker")
    return {"status": "ready", "mode": "embedded" if settings.embedded else "celery"}


def _not_ready(dependency: str):
    response = problem(503, "not-ready", "Not ready", f"the {dependency} does not answer")
    response.headers["Retry-After"] = "5"
    return response


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}})
def metrics(request: Request, session: SessionDep) -> Response:
    """Requests by route template and status (counts, latency histograms), jobs by state, queue
    depth and the oldest queued job's age, workers' heartbeats, finished jobs' outcomes and
    durations (api.metrics). Needs no key: scrape it from inside the deployment only."""
    instruments = request.app.state.metrics
    instruments.jobs.refresh(session)
    return Response(generate_latest(instruments.registry), media_type=CONTENT_TYPE_LATEST)
