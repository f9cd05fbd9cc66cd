"""The asynchronous client: :class:`AsyncClient` and the :class:`AsyncJob` it returns. The
operations are the blocking client's own (:mod:`.operations`); only the driver awaits."""

from __future__ import annotations

import asyncio
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


class AsyncClient(ClientBase):
    """The :class:`~dvrl_client.Client`'s methods, awaited::

        async with AsyncClient("http://127.0.0.1:8000", api_key=KEY) as client:
            values = await client.value("train.csv", target="income", valid="valid.csv")

    An upload's file is read in the event loop's thread, in small blocks, as it is sent.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: Retry | None = None) -> None:
        super().__init__(base_url, api_key, timeout=timeout, retry=retry)
        self._http = httpx.AsyncClient(**self._http_options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, operation: Operation[T]) -> T:
        """Perform the operation's steps until it returns."""
        try:
            step = next(operation)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = operation.send(None)
                    continue
                try:
                    response = await self._send(step)
                except httpx.TransportError as exc:
                    step = operation.throw(exc)
                else:
                    step = operation.send(response)
        except StopIteration as stop:
            return stop.value
        finally:
            operation.close()

    async def _send(self, call: Call) -> httpx.Response:
        with open_request(self._http, call, self.retry.total_s) as request:
            return await self._http.send(request)

    # datasets

    async def upload(self, table: Table, name: str | None = None) -> Dataset:
        return await self._run(self._ops.upload(table, name))

    async def dataset(self, dataset_id: str) -> Dataset:
        return await self._run(self._ops.dataset(dataset_id))

    async def datasets(self) -> list[Dataset]:
        return await self._run(self._ops.datasets())

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._run(self._ops.delete_dataset(dataset_id))

    # jobs

    async def submit(self, spec: dict[str, Any] | None = None, **fields: Any) -> AsyncJob:
        return AsyncJob(self, await self._run(self._ops.submit(spec_of(spec, fields))))

    async def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, await self._run(self._ops.job(job_id)))

    async def jobs(self, state: str | None = None) -> list[AsyncJob]:
        return [AsyncJob(self, body) for body in await self._run(self._ops.jobs(state))]

    async def value(self, train: Table, *, target: str, valid: Table | float,
                    test: Table | None = None, progress: ProgressOption = True,
                    on_submit: Callable[[AsyncJob], Any] | None = None,
                    **spec_fields: Any) -> pd.DataFrame:
        """:meth:`Client.value <dvrl_client.Client.value>`, awaited; a cancelled task cancels
        the job."""
        submitted: list[AsyncJob] = []
        pending: list[Call] = []  # the submission, before its answer

        def note(body: dict[str, Any]) -> None:
            submitted.append(AsyncJob(self, body))
            if on_submit is not None:
                on_submit(submitted[-1])

        try:
            return await self._run(self._ops.value(train, target, valid, test, progress,
                                                   note, pending.append, **spec_fields))
        except asyncio.CancelledError as cancelled:
            for line in await self._run(Operations(CANCEL_RETRY).stop_after_interrupt(
                    [job.id for job in submitted], pending[-1] if pending else None)):
                cancelled.add_note(line)
            raise


class AsyncJob(JobView):
    """:class:`~dvrl_client.Job`'s methods, awaited."""

    def __init__(self, client: AsyncClient, body: dict[str, Any]) -> None:
        super().__init__(body)
        self._client = client

    async def refresh(self) -> AsyncJob:
        self._body = await self._client._run(self._client._ops.job(self.id))
        return self

    async def status(self) -> str:
        return (await self.refresh()).state

    async def wait(self, progress: ProgressOption = True, timeout: float | None = None,
                   poll_interval: float = 2.0) -> AsyncJob:
        try:
            self._body = await self._client._run(self._client._ops.wait(
                self.id, progress, timeout, poll_interval))
        except JobError as exc:
            self._body = exc.job
            raise
        except WaitTimeout as exc:  # as last seen: RUNNING, and how far
            self._body = exc.job or self._body
            raise
        return self

    async def values(self) -> pd.DataFrame:
        return await self._client._run(self._client._ops.values(self))

    async def corrupted(self) -> pd.DataFrame:
        return await self._client._run(self._client._ops.corrupted(self))

    async def curves(self) -> dict[str, pd.DataFrame]:
        return await self._client._run(self._client._ops.curves(self.id))

    async def cancel(self) -> AsyncJob:
        self._body = await self._client._run(self._client._ops.cancel(self.id))
        return self

    async def delete(self) -> None:
        await self._client._run(self._client._ops.delete_job(self.id))
