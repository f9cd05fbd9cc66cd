"""Celery tasks. Thin: the runner claims the job (or an ensemble's member), runs it and records
the outcome.

Pool choice: ``solo`` (the task runs in the worker's main process). LightGBM's OpenMP runtime and
CUDA both break in children forked after they started, and a prefork pool forks exactly there;
with one job per worker process nothing is forked. ``dvrl worker --concurrency N`` runs N worker
processes for more concurrency (worker/slots.py).
"""

from __future__ import annotations

from service.dispatch import MEMBER_TASK_NAME, TASK_NAME, celery_app
from service.member_runner import run_member
from service.runner import run_job

app = celery_app()


@app.task(name=TASK_NAME)
def run_job_task(job_id: str) -> str | None:
    return run_job(job_id)


@app.task(name=MEMBER_TASK_NAME)
def run_member_task(member_id: str) -> str | None:
    return run_member(member_id)
