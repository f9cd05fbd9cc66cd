"""The API's operations, each written once as a generator of steps (see :mod:`.calls`).

``Client`` and ``AsyncClient`` run the same generators; only how a step is performed differs.
Each HTTP call goes through :func:`dvrl_client.retry.send` (retries) and :func:`expect` (an
answer that is not the expected success becomes a typed :class:`~dvrl_client.ProblemError`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from .calls import Call, Operation, Sleep, Upload
from .errors import (
    ClientError,
    Conflict,
    JobCancelled,
    JobFailed,
    NotFound,
    UnexpectedAnswer,
    WaitTimeout,
    problem_error,
)
from .progress import ProgressOption, ProgressReporter
from .resources import Dataset, JobView, Progress
from .retry import Retry, send
from .tables import as_upload, curves_frames, dvrl_value_table, page_frame, values_frame

if TYPE_CHECKING:
    import pandas as pd

PAGE_SIZE = 10_000
FIRST_POLL_S = 0.25  # a job's first seconds (queued, loading) pass quickly: look often


# what the service's successes are: JSON, or the values as a file
SERVICE_TYPES = ("application/json", "application/vnd.apache.parquet", "text/csv")


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    kind = response.headers.get("content-type", "no content type")
    if response.status_code in statuses and (
            response.status_code == 204 or kind.split(";")[0].strip() in SERVICE_TYPES):
        if kind.split(";")[0].strip() == "application/json":
            try:  # cut short, or not the service's: said, not a JSONDecodeError
                response.json()
            except ValueError as exc:
                raise UnexpectedAnswer(
                    f"{response.request.method} {response.request.url} answered "
                    f"{response.status_code} with JSON that cannot be read ({exc}): is the URL "
                    "the service's, and did the answer arrive whole?") from None
        return response
    if response.status_code < 400:  # a success or a redirect, but not the service's
        where = response.headers.get("location")
        moved = f"; it points to {where}: use that address" if where else ""
        raise UnexpectedAnswer(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code} {response.reason_phrase} ({kind}: "
            f"{response.text[:80].strip()!r}), not as a DVRL service does: is the URL the "
            f"service's?{moved}")
    raise problem_error(response)


def _job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


class Operations:
    """The operations under one retry policy."""

    def __init__(self, retry: Retry) -> None:
        self.retry = retry

    def _call(self, call: Call, *ok: int) -> Operation[httpx.Response]:
        response = yield from send(call, self.retry)
        return expect(response, *ok)

    # datasets

    def upload(self, table: Any, name: str | None = None) -> Operation[Dataset]:
        return (yield from self._send(as_upload(table, name)))

    def _send(self, upload: Upload) -> Operation[Dataset]:
        response = yield from self._call(Call.post("/v1/datasets", upload=upload), 201)
        return Dataset.from_api(response.json())

    def upload_once(self, table: Any, name: str | None = None) -> Operation[Dataset]:
        """The dataset this owner uploaded earlier from the same bytes under the same name, or
        else a new upload: ``value()`` run again sends each table once (the digest is asked of
        the service; a service that cannot filter by it lists others, which are passed over)."""
        upload = as_upload(table, name)
        digest = upload.sha256()
        listed = yield from self._call(Call("GET", "/v1/datasets", params={
            "sha256": digest, "page_size": 100}), 200)
        for item in listed.json()["items"]:
            if item.get("sha256") == digest and item.get("filename") == upload.name:
                return Dataset.from_api(item)
        return (yield from self._send(upload))  # the table as prepared once (hashed, written)

    def dataset(self, dataset_id: str) -> Operation[Dataset]:
        call = Call("GET", f"/v1/datasets/{quote(dataset_id, safe='')}")
        response = yield from self._call(call, 200)
        return Dataset.from_api(response.json())

    def _every_page(self, path: str, params: dict[str, Any]) -> Operation[list[dict[str, Any]]]:
        """The items of every page of a listing, in order."""
        found: list[dict[str, Any]] = []
        while True:
            response = yield from self._call(Call("GET", path, params=params), 200)
            page = response.json()
            found += page["items"]
            if not page.get("next_page_token"):
                return found
            params = params | {"page_token": page["next_page_token"]}

    def datasets(self) -> Operation[list[Dataset]]:
        """Every dataset of this key's owner, newest first (all pages)."""
        items = yield from self._every_page("/v1/datasets", {"page_size": 1000})
        return [Dataset.from_api(item) for item in items]

    def delete_dataset(self, dataset_id: str) -> Operation[None]:
        yield from self._call(Call("DELETE", f"/v1/datasets/{quote(dataset_id, safe='')}",
                                   gone_means_done=True), 204)

    # jobs

    def submit(self, spec: dict[str, Any]) -> Operation[dict[str, Any]]:
        response = yield from self._call(Call.post("/v1/jobs", json=spec), 202)
        return response.json()

    def job(self, job_id: str) -> Operation[dict[str, Any]]:
        response = yield from self._call(Call("GET", _job_path(job_id)), 200)
        return response.json()

    def jobs(self, state: str | None = None) -> Operation[list[dict[str, Any]]]:
        """Every job of this key's owner, newest first (all pages)."""
        params: dict[str, Any] = {"page_size": 1000} | ({"state": state} if state else {})
        return (yield from self._every_page("/v1/jobs", params))

    def cancel(self, job_id: str) -> Operation[dict[str, Any]]:
        response = yield from self._call(Call.post(_job_path(job_id, ":cancel")), 202)
        return response.json()

    def cancel_after_interrupt(self, job_id: str) -> Operation[str]:
        """Cancel a job whose caller was interrupted; what became of it, in a sentence (added
        to the interruption as a note; ``dvrl remote value`` prints it)."""
        try:
            yield from self.cancel(job_id)
        except Conflict:  # it ended meanwhile
            return f"job {job_id} on the server had already ended"
        except ClientError as exc:
            return (f"job {job_id} on the server could not be cancelled ({exc}): it goes on; "
                    f"cancel it with POST /v1/jobs/{job_id}:cancel once the server answers")
        return f"job {job_id} on the server is cancelled"

    def stop_after_interrupt(self, job_ids: list[str],
                             pending: Call | None) -> Operation[list[str]]:
        """Cancel the jobs of an interrupted :meth:`value`: those submitted, or, interrupted
        while its submission was on its way (the job may exist with no answer seen), the job
        the same submission finds again (its Idempotency-Key: the service answers with the job
        it made, or makes it). What became of each, in sentences."""
        if not job_ids and pending is not None:
            try:
                job_ids = [(yield from self._call(pending, 200, 202)).json()["id"]]
            except ClientError as exc:
                return [f"the job's submission was interrupted and could not be confirmed "
                        f"({exc}); look for it with GET /v1/jobs"]
        notes = []
        for job_id in job_ids:
            notes.append((yield from self.cancel_after_interrupt(job_id)))
        return notes

    def delete_job(self, job_id: str) -> Operation[None]:
        yield from self._call(Call("DELETE", _job_path(job_id), gone_means_done=True), 204)

    def wait(self, job_id: str, progress: ProgressOption = True, timeout: float | None = None,
             poll_interval: float = 2.0) -> Operation[dict[str, Any]]:
        """Poll until the job ends; its last state, or JobFailed / JobCancelled. Polls start
        every quarter second and slow down to ``poll_interval`` (the service writes progress
        about once a second)."""
        started = time.monotonic()
        delay = FIRST_POLL_S
        reporter = ProgressReporter(progress, job_id)
        try:
            while True:
                body = yield from self.job(job_id)
                reporter(Progress.from_api(body.get("progress")))
                if JobView(body).done:
                    break
                if timeout is not None and time.monotonic() - started + delay > timeout:
                    raise WaitTimeout(f"job {job_id} is still {body['state']} after "
                                      f"{timeout:g}s", body)
                yield Sleep(delay)
                delay = min(poll_interval, delay * 1.5)
        finally:
            reporter.close()
        if body["state"] == "FAILED":
            raise JobFailed(body)
        if body["state"] == "CANCELLED":
            raise JobCancelled(body)
        return body

    # results

    def _training_table(self, job: JobView) -> Operation[Dataset | None]:
        """The job's training dataset, for the types of its id and label columns (None when
        it has been deleted since: the values stay text)."""
        try:
            return (yield from self.dataset(job.spec["dataset_id"]))
        except NotFound:
            return None

    def values(self, job: JobView, train: Dataset | None = None) -> Operation[pd.DataFrame]:
        """Every training row in input order: row, value, rank, label, flagged (and
        noise_injected with label_noise); ``train``: the job's training dataset, if known."""
        response = yield from self._call(
            Call("GET", _job_path(job.id, "/values"), params={"format": "parquet"}), 200)
        if train is None:
            train = yield from self._training_table(job)
        return values_frame(response.content, job, train)

    def corrupted(self, job: JobView) -> Operation[pd.DataFrame]:
        """The flagged rows, lowest value first."""
        items = yield from self._every_page(_job_path(job.id, "/corrupted"),
                                            {"page_size": PAGE_SIZE})
        train = yield from self._training_table(job)
        return page_frame(items, job, train)

    def curves(self, job_id: str) -> Operation[dict[str, pd.DataFrame]]:
        response = yield from self._call(Call("GET", _job_path(job_id, "/curves")), 200)
        return curves_frames(response.json())

    # everything at once

    def value(self, train: Any, target: str, valid: Any, test: Any = None,
              progress: ProgressOption = True,
              on_submitted: Callable[[dict[str, Any]], Any] | None = None,
              on_submitting: Callable[[Call], Any] | None = None,
              **spec_fields: Any) -> Operation[pd.DataFrame]:
        """Upload (each table once: :meth:`upload_once`), submit, wait and download: the table
        ``dvrl value`` writes.
        ``on_submitting(call)`` receives the submission before it is sent (its
        Idempotency-Key finds the job again: :meth:`stop_after_interrupt`)."""
        training = yield from self.upload_once(train, _frame_name(train, "train"))
        spec: dict[str, Any] = {"dataset_id": training.id, "target": target,
                                "evaluations": []}
        if isinstance(valid, int | float) and not isinstance(valid, bool):
            spec["validation"] = {"fraction": valid}
        else:
            validation = yield from self.upload_once(valid, _frame_name(valid, "valid"))
            spec["validation"] = {"dataset_id": validation.id}
        if test is not None:  # the removal test on it, as dvrl value --test (it was unused)
            tested = yield from self.upload_once(test, _frame_name(test, "test"))
            spec |= {"test": {"dataset_id": tested.id}, "evaluations": ["removal"]}
        call = Call.post("/v1/jobs", json=spec | spec_fields)
        if on_submitting is not None:
            on_submitting(call)
        submitted = (yield from self._call(call, 202)).json()
        if on_submitted is not None:
            on_submitted(submitted)
        body = yield from self.wait(submitted["id"], progress)
        job = JobView(body)
        table = dvrl_value_table((yield from self.values(job, training)))
        table.attrs = {"job_id": job.id, "summary": job.summary}
        return table


def _frame_name(table: Any, role: str) -> str | None:
    """A DataFrame's upload is named for its role; a file keeps its own name."""
    return None if isinstance(table, str | os.PathLike) else f"{role}.parquet"
