"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import func, select, text

from service.dispatch import celery_app
from service.models import Job

from ..deps import SessionDep, SettingsDep
from ..problems import problem

router = APIRouter(tags=["health"])
JOBS = Gauge("dvrl_jobs", "jobs by state", ["state"])


@router.get("/healthz", operation_id="healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", summary="The database (and broker) answer")
def readyz(session: SessionDep, settings: SettingsDep):
    try:
        session.execute(text("SELECT 1"))
        if not settings.embedded:
            with celery_app().connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # any failure to reach a dependency means not ready
        return problem(503, "not-ready", "Not ready", f"a dependency does not answer: {exc}")
    return {"status": "ready", "mode": "embedded" if settings.embedded else "celery"}


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics")
def metrics(session: SessionDep) -> Response:
    counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    for state in ("QUEUED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"):
        JOBS.labels(state).set(counts.get(state, 0))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
