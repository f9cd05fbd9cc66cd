"""The blocking client: :class:`Client` and the :class:`Job` it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .base import CANCEL_RETRY, ClientBase, Table, spec_of
from .calls import Call, Operation, Sleep, open_request
from .errors import JobError, WaitTimeout
from .operations import Operations
from .progress import ProgressOption
from .resources import Dataset, JobView
from .retry import Retry

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


class Client(ClientBase):
    """A client of the DVRL service, blocking (see :class:`~dvrl_client.AsyncClient`)::

        with Client("http://127.0.0.1:8000", api_key=KEY) as client:
            values = client.value("train.csv", target="income", valid="valid.csv")
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: Retry | None = None) -> None:
        super().__init__(base_url, api_key, timeout=timeout, retry=retry)
        self._http = httpx.Client(**self._http_options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, operation: Operation[T]) -> T:
        """Perform the operation's steps until it returns."""
        try:
            step = next(operation)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = operation.send(None)
                    continue
                try:
                    response = self._send(step)
                except httpx.TransportError as exc:
                    step = operation.throw(exc)
                else:
                    step = operation.send(response)
        except StopIteration as stop:
            return stop.value
        finally:
            operation.close()

    def _send(self, call: Call) -> httpx.Response:
        with open_request(self._http, call, self.retry.total_s) as request:
            return self._http.send(request)

    # datasets

    def upload(self, table: Table, name: str | None = None) -> Dataset:
        """Upload a CSV or Parquet file (streamed from disk) or a DataFrame (sent as Parquet)."""
        return self._run(self._ops.upload(table, name))

    def dataset(self, dataset_id: str) -> Dataset:
        return self._run(self._ops.dataset(dataset_id))

    def datasets(self) -> list[Dataset]:
        """This key's datasets, newest first (``value()`` leaves its uploads here)."""
        return self._run(self._ops.datasets())

    def delete_dataset(self, dataset_id: str) -> None:
        self._run(self._ops.delete_dataset(dataset_id))

    # jobs

    def submit(self, spec: dict[str, Any] | None = None, **fields: Any) -> Job:
        """Start a job from a spec (README: dataset_id, target, validation, ...), given as a
        dict, as keyword arguments, or both."""
        return Job(self, self._run(self._ops.submit(spec_of(spec, fields))))

    def job(self, job_id: str) -> Job:
        return Job(self, self._run(self._ops.job(job_id)))

    def jobs(self, state: str | None = None) -> list[Job]:
        """This key's jobs, newest first (optionally only those in ``state``)."""
        return [Job(self, body) for body in self._run(self._ops.jobs(state))]

    def value(self, train: Table, *, target: str, valid: Table | float, test: Table | None = None,
              progress: ProgressOption = True, on_submit: Callable[[Job], Any] | None = None,
              **spec_fields: Any) -> pd.DataFrame:
        """Value every row of ``train`` on the service and return the table ``dvrl value``
        writes: one row per training row in input order, columns ``row``, ``value``, ``rank``
        (1 = lowest value), ``label`` (and ``noise_injected`` with ``label_noise``).

        ``train``, ``valid`` and ``test`` are paths or DataFrames; ``valid`` may be a fraction
        of the training rows to hold out. Other keywords are job spec fields (``seed``,
        ``id_column``, ``method``, ``dvrl={"iterations": 500}``, ``label_noise``, ...); no
        evaluations are run unless ``evaluations`` is given, but for the removal test on a
        ``test`` table (``job.curves()["removal"]``). The frame's ``attrs`` hold the
        ``job_id`` and the job's ``summary``. ``on_submit(job)`` is called once the job is
        submitted (to show or keep its id). The job and the uploaded tables stay on the service
        (its page, curves and values; ``client.job(job_id).delete()`` and
        ``client.delete_dataset(...)`` remove them). Interrupted (Ctrl-C), the job is cancelled
        and the interruption's note says whether that worked."""
        submitted: list[Job] = []
        pending: list[Call] = []  # the submission, before its answer

        def note(body: dict[str, Any]) -> None:
            submitted.append(Job(self, body))
            if on_submit is not None:
                on_submit(submitted[-1])

        try:
            return self._run(self._ops.value(train, target, valid, test, progress,
                                             note, pending.append, **spec_fields))
        except KeyboardInterrupt as interrupt:
            for line in self._run(Operations(CANCEL_RETRY).stop_after_interrupt(
                    [job.id for job in submitted], pending[-1] if pending else None)):
                interrupt.add_note(line)
            raise


class Job(JobView):
    """A job on the service, as last seen (``state``, ``progress``, ``summary``, ``error``);
    its methods ask the service again."""

    def __init__(self, client: Client, body: dict[str, Any]) -> None:
        super().__init__(body)
        self._client = client

    def refresh(self) -> Job:
        self._body = self._client._run(self._client._ops.job(self.id))
        return self

    def status(self) -> str:
        """The job's state now."""
        return self.refresh().state

    def wait(self, progress: ProgressOption = True, timeout: float | None = None,
             poll_interval: float = 2.0) -> Job:
        """Until the job ends: a progress bar (iteration, reward, ETA) unless ``progress`` is
        False, or ``progress(Progress)`` called on each change. Raises JobFailed (with the
        job's problem) or JobCancelled when it ended without values, WaitTimeout after
        ``timeout`` seconds (the job goes on)."""
        try:
            self._body = self._client._run(self._client._ops.wait(self.id, progress, timeout,
                                                                  poll_interval))
        except JobError as exc:
            self._body = exc.job
            raise
        except WaitTimeout as exc:  # as last seen: RUNNING, and how far
            self._body = exc.job or self._body
            raise
        return self

    def values(self) -> pd.DataFrame:
        """Every training row in input order: row, value, rank, label, flagged (and
        noise_injected with label_noise)."""
        return self._client._run(self._client._ops.values(self))

    def corrupted(self) -> pd.DataFrame:
        """The flagged rows (the lowest-valued ``flag_fraction``), lowest value first."""
        return self._client._run(self._client._ops.corrupted(self))

    def curves(self) -> dict[str, pd.DataFrame]:
        """``reward_trace``, and ``removal`` / ``discovery`` when the job made them."""
        return self._client._run(self._client._ops.curves(self.id))

    def cancel(self) -> Job:
        """Ask the job to stop; ``wait()`` then raises JobCancelled."""
        self._body = self._client._run(self._client._ops.cancel(self.id))
        return self

    def delete(self) -> None:
        """Delete the finished job and its results."""
        self._client._run(self._client._ops.delete_job(self.id))
