"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import func, select, text

from service.dispatch import celery_app
from service.models import Job

from ..deps import SessionDep, SettingsDep
from ..problems import problem

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
JOBS = Gauge("dvrl_jobs", "jobs by state", ["state"])


@router.get("/healthz", operation_id="healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", summary="The database (and broker) answer")
def readyz(session: SessionDep, settings: SettingsDep):
    """503 names the dependency that does not answer (``database`` or ``broker``) and nothing
    else: hosts, users and error texts stay in the service log."""
    try:
        session.execute(text("SELECT 1"))
    except Exception:  # any failure to reach a dependency means not ready
        log.warning("readyz: the database does not answer", exc_info=True)
        return _not_ready("database")
    if not settings.embedded:
        try:
            with celery_app().connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
        except Exception:
            log.warning("readyz: the broker does not answer", exc_info=True)
            return _not_ready("broker")
    return {"status": "ready", "mode": "embedded" if settings.embedded else "celery"}


def _not_ready(dependency: str):
    response = problem(503, "not-ready", "Not ready", f"the {dependency} does not answer")
    response.headers["Retry-After"] = "5"
    return response


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics")
def metrics(session: SessionDep) -> Response:
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    for state in ("QUEUED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"):
        JOBS.labels(state).set(counts.get(state, 0))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
