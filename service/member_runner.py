"""Runs one member of an ensemble job: the same code behind the Celery worker and the embedded
worker, and the same monitor as a single job (service.runner) on the member's own row.

``run_member(member_id)`` claims the member (service.members), prepares the job's data exactly as
a single run of the job would (the job's seed splits and corrupts it), fits DVRL with the
member's own seed, resuming from the member's checkpoint when an earlier worker died, and keeps
the member's values. The member that finishes last then calls ``run_job`` in the same process,
which combines every member's values into the job's results (anyone else's call is a no-op, and
the sweeper sends the job on if this process dies first).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select

from dvrl_core import RunStopped

from . import jobs, members
from .db import session_scope
from .models import JobMember
from .runner import (
    WORKER_ID,
    _Monitor,
    _prepare,
    _valuer,
    fit_resuming,
    guarded,
    run_job,
    with_retries,
)
from .settings import Settings, get_settings
from .specs import JobSpec

log = logging.getLogger(__name__)


class _MemberMonitor(_Monitor):
    """The job's monitor on a member's row; its checkpoints also record their iteration, so
    that a resumed member's progress (and its job's) carries on from there, not from 0."""

    def on_checkpoint(self, state: bytes, iteration: int) -> None:
        now = time.monotonic()
        if now - self.last_checkpoint < self.settings.checkpoint_interval_s:
            return
        self.last_checkpoint = now
        self._write(lambda session: members.save_checkpoint(session, self.job_id, self.holder,
                                                            state, iteration))


def run_member(member_id: str, settings: Settings | None = None,
               holder: str = WORKER_ID) -> str | None:
    """Run one member to its end; returns its final state, or None if it was not ours."""
    settings = settings or get_settings()

    def take() -> tuple[JobSpec, int, bytes | None, int | None, bool, float] | None:
        with session_scope() as session:
            if not members.claim(session, member_id, holder, settings):
                return None
            seed, checkpoint, at = session.execute(
                select(JobMember.seed, JobMember.checkpoint, JobMember.checkpoint_iteration)
                .where(JobMember.id == member_id)).one()
            job = jobs.get_job(session, members.job_of(member_id))
            return (JobSpec.model_validate(job.spec), int(seed), checkpoint, at,
                    job.cancel_requested, jobs.elapsed_since_start(session, job.id))

    taken = with_retries(take, settings)
    if taken is None:
        return None
    spec, seed, checkpoint, checkpoint_iteration, cancelled, elapsed = taken
    budget = float(spec.time_budget_s or settings.default_time_limit_s)
    # the job's time budget counts from its first member's start, for every member
    with _MemberMonitor(member_id, settings, budget, holder, already_elapsed_s=elapsed,
                        store=members) as monitor:
        if cancelled:
            state = monitor.finish("CANCELLED", progress={"phase": "cancelled"})
        else:
            resumed_from = checkpoint_iteration if checkpoint is not None else None
            if resumed_from is not None:
                log.info("member %s: resuming from its checkpoint at iteration %d", member_id,
                         resumed_from)
            state = guarded(spec, budget, monitor, lambda: _run(
                member_id, spec, seed, monitor, checkpoint, resumed_from))
    if state is not None:  # the last member's worker combines them (a no-op for the others)
        run_job(members.job_of(member_id), settings, holder)
    return state


def _run(member_id: str, spec: JobSpec, seed: int, monitor: _Monitor,
         checkpoint: bytes | None, resumed_from: int | None) -> str | None:
    monitor.phase("preparing", **_at(resumed_from))
    data, _ = _prepare(member_id, spec)
    valuer, total = _valuer(spec, data, seed)
    monitor.phase("training", total=total, **_at(resumed_from, 0))
    result = fit_resuming(valuer, data, monitor, checkpoint)
    if monitor.should_stop() and monitor.cancelled:
        raise RunStopped(total, total, b"")
    monitor.phase("writing", iteration=total, total=total)

    def write(session) -> dict[str, Any]:
        return members.store_values(session, member_id, result, resumed_from) | {"seed": seed}

    return monitor.finish("SUCCEEDED", write, progress={
        "phase": "done", "iteration": total, "total": total, "elapsed_s": monitor.elapsed()})


def _at(iteration: int | None, default: int | None = None) -> dict[str, int]:
    value = iteration if iteration is not None else default
    return {} if value is None else {"iteration": value}


__all__ = ["run_member"]
