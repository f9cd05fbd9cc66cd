"""The job runner: the same code behind the Celery worker and the embedded in-process worker.

``run_job(job_id)`` claims the job (a lease, see service.jobs), values the data with dvrl_core,
writes progress at a steady rate, honours cancellation and the time budget cooperatively, saves
checkpoints, runs the requested evaluations and stores the results with the final state in one
transaction; it never raises for a job's own failure (the job ends FAILED with a problem body
that says why). A heartbeat thread renews the lease through phases that report no progress;
database errors are retried for ``db_retry_s`` (a restarted PostgreSQL), and a worker that lost
its lease stops without writing anything.

An ensemble job's members run in service.member_runner with the same monitor (on the member's
own lease, checkpoint and progress: service.members); ``run_job`` then claims the job once its
last member has finished, combines the members' values (dvrl_core.ensemble) and evaluates and
writes them like a single run's.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import numpy as np
from sqlalchemy.exc import DBAPIError

from dvrl_core import (
    CheckpointMismatchError,
    DVRLError,
    PreparedData,
    RunStopped,
    detection_auroc,
    discovery_curve,
    found_fraction,
    prepare,
    removal_curves,
    training_choices,
    weighted_training,
)
from dvrl_core.checks import checks_of
from dvrl_core.controls import marginal_control
from dvrl_core.ensemble import combine_results
from dvrl_core.evaluation import evaluation_sample
from dvrl_core.methods import make_method
from dvrl_core.noise import with_label_noise
from dvrl_core.predictors.base import resolve_device
from dvrl_core.threads import threads_in_use

from . import jobs, members, webhook_events, webhooks
from .datasets import load_frame
from .db import first_line, session_scope, transient
from .results import write_values
from .settings import Settings, get_settings
from .specs import JobSpec

log = logging.getLogger(__name__)
TRACE_POINTS = 500
T = TypeVar("T")
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLost(Exception):
    """Another worker took the job over (ours was presumed dead): stop, write nothing."""


def with_retries(action: Callable[[], T], settings: Settings) -> T:
    """Run a database action, retrying connection failures (a restarted PostgreSQL) and a busy
    SQLite for up to ``settings.db_retry_s`` seconds."""
    deadline = time.monotonic() + settings.db_retry_s
    pause = 0.5
    while True:
        try:
            return action()
        except DBAPIError as exc:
            if not transient(exc) or time.monotonic() > deadline:
                raise
            log.warning("database unavailable (%s); retrying in %.1fs", first_line(exc), pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


class LeaseStore(Protocol):
    """Where a run's lease, progress and checkpoints live: a job's row (service.jobs) or an
    ensemble member's (service.members); ``key`` is the job's or the member's id."""

    def renew(self, session: Any, key: str, holder: str, settings: Settings) -> bool: ...

    def record_progress(self, session: Any, key: str, holder: str, progress: dict[str, Any],
                        settings: Settings) -> bool: ...

    def cancel_requested(self, session: Any, key: str) -> bool: ...

    def save_checkpoint(self, session: Any, key: str, holder: str, state: bytes) -> bool: ...

    def hold(self, session: Any, key: str, holder: str) -> bool: ...

    def finish(self, session: Any, key: str, holder: str, state: str, *,
               error: dict[str, Any] | None = None, summary: dict[str, Any] | None = None,
               curves: dict[str, Any] | None = None,
               progress: dict[str, Any] | None = None) -> bool: ...


class _Monitor:
    """Progress writes, cancel checks, checkpoints and the lease's heartbeat."""

    def __init__(self, job_id: str, settings: Settings, budget_s: float,
                 holder: str = WORKER_ID, already_elapsed_s: float = 0.0,
                 notify_progress: bool = False, store: LeaseStore = jobs) -> None:
        self.job_id = job_id
        self.store = store
        self.notify_progress = notify_progress
        self.milestone = 0
        self.holder = holder
        self.settings = settings
        self.started = time.monotonic() - already_elapsed_s
        self.budget_s = budget_s
        self.last_progress = self.last_cancel_check = self.last_checkpoint = 0.0
        self.cancelled = False
        self.over_budget = False
        self.lost = False
        self.recent: list[float] = []
        self.reached: dict[str, int] = {}  # the last iteration trained, and of how many
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                           name=f"dvrl-heartbeat-{job_id[:8]}")

    def __enter__(self) -> _Monitor:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._heartbeat.join(timeout=5)

    def _beat(self) -> None:
        """Renew the lease every third of its length, whatever the job is doing."""
        while not self._stop.wait(self.settings.lease_s / 3):
            try:
                with session_scope() as session:
                    if not self.store.renew(session, self.job_id, self.holder, self.settings):
                        self.lost = True
                        return
            except DBAPIError as exc:  # the database is away: the next beat tries again
                log.warning("heartbeat for job %s failed: %s", self.job_id, first_line(exc))

    def _write(self, action: Callable[[Any], bool]) -> None:
        def attempt() -> bool:
            with session_scope() as session:
                return action(session)

        if not with_retries(attempt, self.settings):
            self.lost = True
            raise LeaseLost(self.job_id)

    def phase(self, name: str, **extra: Any) -> None:
        """Write the phase; the iterations reached so far stay in it (a progress bar went back
        to nothing while the values were evaluated or an ensemble combined)."""
        progress = {"phase": name, "elapsed_s": self.elapsed()} | self.reached | extra
        self._write(lambda session: self.store.record_progress(session, self.job_id, self.holder,
                                                               progress, self.settings))

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def on_progress(self, progress) -> None:
        if math.isfinite(progress.reward):  # a baseline's steps have none (NaN)
            self.recent = (self.recent + [float(progress.reward)])[-20:]
        self.reached = {"iteration": progress.iteration, "total": progress.total}
        if self.notify_progress:
            self._milestone(progress.iteration, progress.total)
        now = time.monotonic()
        last = progress.iteration == progress.total
        if not last and now - self.last_progress < self.settings.progress_interval_s:
            return
        self.last_progress = now
        rate = progress.iteration / max(progress.elapsed_s, 1e-9)
        self.phase("training", iteration=progress.iteration, total=progress.total,
                   reward=float(np.mean(self.recent)) if self.recent else None,
                   eta_s=round((progress.total - progress.iteration) / max(rate, 1e-9), 1))

    def _milestone(self, iteration: int, total: int) -> None:
        """A webhook event when training passes 25%, 50% or 75% (webhook_events)."""
        percent = webhook_events.milestone(iteration, total)
        if percent is None or percent <= self.milestone:
            return
        progress = {"phase": "training", "iteration": iteration, "total": total}

        def reach(session) -> bool:
            if not jobs.hold(session, self.job_id, self.holder):
                return False
            webhook_events.progress_reached(session, self.job_id, percent, progress,
                                            jobs.db_now(session))
            return True

        self._write(reach)
        self.milestone = percent
        webhooks.wake()

    def should_stop(self) -> bool:
        if self.lost:
            raise LeaseLost(self.job_id)
        if self.elapsed() > self.budget_s:
            self.over_budget = True
            return True
        now = time.monotonic()
        if now - self.last_cancel_check < self.settings.cancel_check_interval_s:
            return False
        self.last_cancel_check = now

        def check() -> bool:
            with session_scope() as session:
                return self.store.cancel_requested(session, self.job_id)

        self.cancelled = with_retries(check, self.settings)
        return self.cancelled

    def on_checkpoint(self, state: bytes, iteration: int) -> None:
        now = time.monotonic()
        if now - self.last_checkpoint < self.settings.checkpoint_interval_s:
            return
        self.last_checkpoint = now
        self._write(lambda session: self.store.save_checkpoint(session, self.job_id, self.holder,
                                                               state))

    def finish(self, state: str, write: Callable[[Any], dict[str, Any]] | None = None,
               **fields: Any) -> str | None:
        """End the job in one transaction (with its results when ``write`` is given), if it is
        still ours; returns the state, or None when another worker has it now."""
        def attempt() -> bool:
            with session_scope() as session:
                if not self.store.hold(session, self.job_id, self.holder):
                    return False
                if write is not None:
                    fields["summary"] = write(session)
                return self.store.finish(session, self.job_id, self.holder, state, **fields)

        if not with_retries(attempt, self.settings):
            log.warning("job %s: taken over by another worker; nothing written", self.job_id)
            return None
        webhooks.wake()  # its job.finished event, if any, goes out now
        return state


def run_job(job_id: str, settings: Settings | None = None,
            holder: str = WORKER_ID) -> str | None:
    """Run one job to its end; returns the final state, or None if it was not ours to run."""
    settings = settings or get_settings()

    def take() -> tuple[JobSpec, bytes | None, bool, float] | None:
        with session_scope() as session:
            if not jobs.claim(session, job_id, holder, settings):
                return None
            job = jobs.get_job(session, job_id)
            return (JobSpec.model_validate(job.spec), job.checkpoint, job.cancel_requested,
                    jobs.elapsed_since_start(session, job_id))

    taken = with_retries(take, settings)
    if taken is None:
        return None
    spec, checkpoint, cancelled, elapsed = taken
    budget = float(spec.time_budget_s or settings.default_time_limit_s)
    # the budget counts from the job's first start: a resumed job gets only what is left
    notify_progress = spec.notify is not None and "job.progress" in spec.notify.events
    with _Monitor(job_id, settings, budget, holder, already_elapsed_s=elapsed,
                  notify_progress=notify_progress) as monitor:
        if cancelled:  # cancelled while its earlier worker was dying
            return monitor.finish("CANCELLED", progress={"phase": "cancelled"})
        if checkpoint is not None:
            log.info("job %s: resuming from its checkpoint", job_id)
        if spec.ensemble > 1:  # every member has finished: combine them
            return guarded(spec, budget, monitor, lambda: _run_ensemble(job_id, spec, monitor))
        return guarded(spec, budget, monitor, lambda: _run(job_id, spec, monitor, checkpoint))


def guarded(spec: JobSpec, budget: float, monitor: _Monitor,
            run: Callable[[], str | None]) -> str | None:
    """``run()``, with every way it can stop turned into the run's final state: cancelled, past
    its time budget, data that cannot be valued, a bug (never raised); None when another worker
    took the run over."""
    try:
        return run()
    except LeaseLost:
        log.warning("job %s: lease lost to another worker; stopping", monitor.job_id)
        return None
    except RunStopped:
        if monitor.cancelled:  # where training stopped stays on the job
            return monitor.finish("CANCELLED", progress={
                "phase": "cancelled", "elapsed_s": monitor.elapsed()} | monitor.reached)
        lower = " or lower dvrl.iterations" if spec.method == "dvrl" else ""
        return _fail("time-budget-exceeded", "Time budget exceeded",
                     f"the job ran past its time budget of {budget:.0f} s; raise "
                     f"time_budget_s{lower}", monitor)
    except DVRLError as exc:
        return _fail(exc.code, "The data cannot be valued as given", str(exc), monitor)
    except Exception:  # a bug, not the user's data: log it, keep tracebacks out of the body
        log.exception("job %s failed", monitor.job_id)
        return _fail("internal-error", "Internal error",
                     "the job failed unexpectedly; the service log has the details",
                     monitor, status=500)


def _fail(code: str, title: str, detail: str, monitor: _Monitor,
          status: int = 422) -> str | None:
    error = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail}
    return monitor.finish("FAILED", error=error,
                          progress={"phase": "failed", "elapsed_s": monitor.elapsed()})


def _prepare(job_id: str, spec: JobSpec) -> tuple[PreparedData, np.ndarray | None]:
    with session_scope() as session:
        train = load_frame(session, spec.dataset_id)
        valid = load_frame(session, spec.validation.dataset_id) \
            if spec.validation.dataset_id else None
        test = load_frame(session, spec.test.dataset_id) if spec.test else None
    data = prepare(train, spec.target, valid, valid_fraction=spec.validation.fraction, test=test,
                   id_column=spec.id_column, feature_columns=spec.features, task=spec.task,
                   random_state=spec.seed)
    corrupted = None
    if spec.label_noise is not None:
        data, corrupted = with_label_noise(data, spec.label_noise, spec.seed)
    return data, corrupted


def _valuer(spec: JobSpec, data: PreparedData, seed: int | None = None) -> tuple[Any, int]:
    """The job's valuation method and its number of progress steps: DVRL with the spec's
    predictor and parameters (and an ensemble member's own ``seed``), or a baseline with its own
    defaults and the job's seed."""
    device = str(resolve_device(spec.device))
    if spec.method == "dvrl":
        dvrl = make_method("dvrl", predictor=spec.predictor, device=device,
                           random_state=spec.seed if seed is None else seed,
                           **spec.dvrl.model_dump())
        return dvrl, spec.dvrl.iterations
    valuer = make_method(spec.method, random_state=spec.seed, device=device)
    return valuer, int(valuer.steps(data))


def _run(job_id: str, spec: JobSpec, monitor: _Monitor,
         checkpoint: bytes | None) -> str | None:
    monitor.phase("preparing")
    data, corrupted = _prepare(job_id, spec)
    valuer, total = _valuer(spec, data)
    monitor.phase("training", iteration=0, total=total)
    result = fit_resuming(valuer, data, monitor, checkpoint)
    return _conclude(job_id, spec, monitor, data, result, corrupted, total)


def fit_resuming(valuer: Any, data: PreparedData, monitor: _Monitor,
                 checkpoint: bytes | None) -> Any:
    """``valuer.fit`` from the run's checkpoint, if it has one. A checkpoint that does not fit
    (saved before an upgrade that prepares the data into other features) is dropped and the
    run starts again: seeded, it gives the same values. The baselines keep no checkpoints:
    given one, they start again."""
    def fit(resume_from: bytes | None) -> Any:
        return valuer.fit(data, on_progress=monitor.on_progress, should_stop=monitor.should_stop,
                          on_checkpoint=monitor.on_checkpoint, resume_from=resume_from)

    try:
        return fit(checkpoint)
    except CheckpointMismatchError:
        log.warning("job %s: its checkpoint does not fit this run; starting again",
                    monitor.job_id)
        return fit(None)


def _run_ensemble(job_id: str, spec: JobSpec, monitor: _Monitor) -> str | None:
    """The members' values combined (mean, standard errors, rank stability, their trust
    checks), then evaluated and written as one run's are."""
    total = spec.dvrl.iterations * spec.ensemble
    monitor.reached = {"iteration": total, "total": total}  # every member has run
    monitor.phase("combining")
    data, corrupted = _prepare(job_id, spec)
    with session_scope() as session:
        results, seeds = members.load_results(session, job_id, data)
    if len(results) != spec.ensemble:  # cannot happen: the job is combined when all SUCCEEDED
        raise RuntimeError(f"{len(results)} of {spec.ensemble} members have values")
    result = combine_results(results, seeds)
    return _conclude(job_id, spec, monitor, data, result, corrupted, total)


def _conclude(job_id: str, spec: JobSpec, monitor: _Monitor, data: PreparedData, result,
              corrupted: np.ndarray | None, total: int) -> str | None:
    """Evaluate the values and write them with the job's final state."""
    monitor.phase("evaluating")
    summary, curves = _evaluate(spec, data, result, corrupted)
    monitor.phase("writing")
    flag_fraction = spec.flag_fraction or spec.label_noise or 0.1
    if monitor.should_stop() and monitor.cancelled:
        raise RunStopped(total, total, b"")

    def write(session) -> dict[str, Any]:
        flagged = write_values(session, job_id, result, flag_fraction, corrupted)
        return summary | {"flagged": flagged}

    # values and the final state in one transaction, under the row lock: written once
    return monitor.finish("SUCCEEDED", write, curves=curves,
                          progress={"phase": "done", "iteration": total, "total": total,
                                    "elapsed_s": monitor.elapsed()})


def _weights(method: str, values: np.ndarray) -> tuple[np.ndarray, str]:
    """Sample weights for the weighted-training check: DVRL's values lie in (0, 1]; the
    baselines' values can be negative, so they are scaled linearly onto [0, 1]."""
    if method == "dvrl":
        return values, "values"
    low, high = float(np.min(values)), float(np.max(values))
    if high - low <= 0:
        return np.ones_like(values), "equal (all values tie)"
    return (values - low) / (high - low), "values scaled to [0, 1]"


def _evaluate(spec: JobSpec, data: PreparedData, result, corrupted):
    trace = result.reward_trace
    step = max(1, len(trace) // TRACE_POINTS)
    curves: dict[str, Any] = {"reward_trace": {"iteration": list(range(1, len(trace) + 1, step)),
                                               "reward": trace[::step].round(6).tolist()}}
    summary: dict[str, Any] = {
        "method": spec.method, "rows": len(result), "task": data.task,
        "predictor": result.params.get("predictor"), "metric": result.params.get("metric"),
        "device": result.device, "threads": threads_in_use(),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "diagnostics": {k: v for k, v in result.diagnostics.items()
                        if k not in ("trust", "ensemble", "validation_copies", "warnings")},
        "versions": result.versions,
    } | checks_of(result, data)
    if "ensemble" in result.diagnostics:  # members, seeds, rank stability, standard errors
        summary["ensemble"] = result.diagnostics["ensemble"]
    if "trust" in result.diagnostics:  # held-out checks of the values, and what was returned
        summary["trust"] = result.diagnostics["trust"]
    if corrupted is not None:
        control = marginal_control(data, random_state=spec.seed)
        curve = discovery_curve(result.values, corrupted)
        curves["discovery"] = curve.to_dict(orient="list")
        summary["label_noise"] = {
            "flipped": int(len(corrupted)),
            **{f"found_at_{p}": found_fraction(result.values, corrupted, p / 100)
               for p in (10, 20, 30)},
            "auroc": detection_auroc(result.values, corrupted),
            "marginal_control": {"found_at_20": found_fraction(control, corrupted, 0.2),
                                 "auroc": detection_auroc(control, corrupted)},
        }
    if set(spec.evaluations) & {"removal", "weighted", "training_choices"}:
        sampled_data, sampled_values = evaluation_sample(data, result.values, spec.seed)
        model: dict[str, Any] = {"model": spec.evaluation.model,
                                 "metric": spec.evaluation.metric, "random_state": spec.seed}
        weights, described = _weights(spec.method, sampled_values)
        with _skipped_on_failure("removal", summary):
            if "removal" in spec.evaluations:
                frame = removal_curves(sampled_data, sampled_values, **model)
                curves["removal"] = frame.to_dict(orient="list") | {
                    "metric": frame.attrs["metric"], "model": spec.evaluation.model,
                    "rows": len(sampled_values)}
        with _skipped_on_failure("weighted", summary):
            if "weighted" in spec.evaluations:
                summary["weighted_training"] = weighted_training(
                    sampled_data, weights, **model) | {"weights": described,
                                                        "model": spec.evaluation.model}
        with _skipped_on_failure("training_choices", summary):
            if "training_choices" in spec.evaluations:
                summary["training_choices"] = training_choices(
                    sampled_data, weights, remove_fraction=spec.evaluation.remove_fraction,
                    **model) | {"weights": described}
    return summary, curves


@contextmanager
def _skipped_on_failure(evaluation: str, summary: dict[str, Any]) -> Iterator[None]:
    """An evaluation that fails on this data is skipped, not the job: the values are what the
    user came for, and the evaluations only check them. The summary says which was skipped
    (``evaluation_errors``); the cause is logged, as any failure that is ours."""
    try:
        yield
    except RunStopped:
        raise
    except DVRLError as exc:  # the data's: said in the summary
        log.info("evaluation %s skipped: %s", evaluation, exc)
        summary.setdefault("evaluation_errors", {})[evaluation] = str(exc)
    except Exception:  # ours: logged with its traceback, kept out of the summary
        log.exception("evaluation %s failed; the job keeps its values", evaluation)
        detail = "it failed on this data and was skipped; the values are not affected"
        summary.setdefault("evaluation_errors", {})[evaluation] = detail


__all__ = ["LeaseStore", "guarded", "run_job"]
