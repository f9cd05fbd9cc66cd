"""Jobs: create (202), get, list (page tokens, state filter), cancel."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from starlette.convertors import Convertor, register_url_convertor

from service import dispatch, jobs, members, webhooks
from service.db import retrying
from service.models import Job
from service.specs import JobSpec

from ..deps import (
    IdempotencyKey,
    OwnerDep,
    PageSize,
    SessionDep,
    SettingsDep,
    decode_id_token,
    encode_token,
)
from ..schemas import JobPublic, JobsPublic, ProblemPublic, ProgressPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobIdConvertor(Convertor[str]):
    """A job id in a path: no ``:``, so ``/v1/jobs/{id}:cancel`` never reads as the job
    ``{id}:cancel`` (a GET there is a 405 that names POST, not a 404)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("job_id", JobIdConvertor())
State = Literal["QUEUED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"]


def to_public(job: Job) -> JobPublic:
    base = f"/v1/jobs/{job.id}"
    links = {"self": base, "cancel": f"{base}:cancel"}
    if (job.spec or {}).get("notify"):
        links["deliveries"] = f"{base}/deliveries"
    if job.state == "SUCCEEDED":
        links |= {"values": f"{base}/values", "corrupted": f"{base}/corrupted",
                  "curves": f"{base}/curves"}
    progress = dict(job.progress or {"phase": "queued"})
    if job.heartbeat_at is not None and job.state in members.RUNNING_JOB:
        # the lease's renewal: a worker evaluating for minutes writes no progress, yet lives
        progress["heartbeat"] = job.heartbeat_at
    return JobPublic(id=job.id, state=job.state, spec=JobSpec.model_validate(job.spec),
                     progress=ProgressPublic.model_validate(progress),
                     error=ProblemPublic.model_validate(job.error) if job.error else None,
                     summary=job.summary, created_at=job.created_at, started_at=job.started_at,
                     finished_at=job.finished_at, links=links)


@router.post("", status_code=202, response_model=JobPublic, operation_id="create_job",
             summary="Start a valuation job")
def create_job(spec: JobSpec, response: Response, session: SessionDep, settings: SettingsDep,
               owner: OwnerDep, idempotency_key: IdempotencyKey = None) -> JobPublic:
    """Queue a job (202). Per owner, at most ``DVRL_MAX_JOBS_IN_FLIGHT`` jobs are queued or
    running at a time; beyond that the answer is 429 with ``Retry-After``."""
    job, new = retrying(session, lambda: jobs.create_job(session, spec, owner, settings,
                                                         idempotency_key))
    if new:  # the row is committed before the message is sent; no broker: sent by the sweeper
        dispatch.submit(session, job.id, spec.device)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return to_public(job)


@router.get("", response_model=JobsPublic, operation_id="list_jobs",
            summary="List jobs, newest first")
def list_jobs(session: SessionDep, owner: OwnerDep, state: State | None = None,
              page_size: PageSize = 50, page_token: str | None = None) -> JobsPublic:
    after = decode_id_token(page_token, "jobs")
    items = jobs.list_jobs(session, owner, page_size + 1, after, state)
    more = len(items) > page_size
    items = items[:page_size]
    return JobsPublic(items=[to_public(j) for j in items],
                      next_page_token=encode_token("jobs", items[-1].id) if more else None)


@router.post("/{job_id}:cancel", status_code=202, response_model=JobPublic,
             operation_id="cancel_job", summary="Ask a job to stop (cooperative)")
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobPublic:
    job = retrying(session, lambda: jobs.request_cancel(session, job_id, owner))
    webhooks.wake()  # a queued job ended here; embedded mode's sender sends its event now
    return to_public(job)


@router.delete("/{job_id:job_id}", status_code=204, operation_id="delete_job",
               summary="Delete a finished job and its results (409 while it is unfinished)")
def delete_job(job_id: str, request: Request, session: SessionDep,
               owner: OwnerDep) -> Response:
    """The job, its values and curves, and its webhook events, undelivered ones included."""
    request.app.state.metrics.jobs.count_finished(session)  # counted before it is gone
    retrying(session, lambda: jobs.delete_job(session, job_id, owner))
    return Response(status_code=204)


@router.get("/{job_id:job_id}", response_model=JobPublic, operation_id="get_job",
            summary="A job's state, progress and outcome")
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    # the most frequent request (polling): serialised once, without a second validation pass
    return Response(to_public(jobs.get_job(session, job_id, owner)).model_dump_json(),
                    media_type="application/json")
