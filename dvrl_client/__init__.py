"""dvrl_client: a Python client for the DVRL data valuation service.

>>> from dvrl_client import Client
>>> with Client("http://127.0.0.1:8000", api_key=KEY) as client:
...     values = client.value("train.csv", target="income", valid="valid.csv", seed=0)
>>> values.sort_values("rank").head(20)      # the rows to review first

Step by step: ``client.upload(path or DataFrame) -> Dataset``, ``client.submit(spec) -> Job``,
``job.wait()`` (a progress bar; JobFailed / JobCancelled when it ended without values),
``job.values()``, ``job.corrupted()``, ``job.curves()``, ``job.cancel()``, ``job.delete()``.
:class:`AsyncClient` has the same methods, awaited. Connection failures, 429 and 502-504 are retried
(:class:`Retry`), POSTs with an ``Idempotency-Key`` so that a retry never makes a second job;
every other problem answer is a typed :class:`ProblemError` (see :mod:`dvrl_client.errors`).

This package needs httpx, tqdm and, for tables, pandas and pyarrow: not torch, nor the service.
"""

from __future__ import annotations

import logging

from .async_client import AsyncClient, AsyncJob
from .base import VERSION as __version__
from .client import Client, Job
from .errors import (
    ClientError,
    Conflict,
    InvalidRequest,
    JobCancelled,
    JobError,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServerError,
    ServiceUnavailable,
    ServiceUnreachable,
    TooManyRequests,
    Unauthorized,
    UnexpectedAnswer,
    WaitTimeout,
)
from .resources import Column, Dataset, Progress
from .retry import Retry

# retries are logged as warnings on "dvrl_client"; shown only where the application configures
# logging (the `dvrl remote` command does)
logging.getLogger("dvrl_client").addHandler(logging.NullHandler())

__all__ = [
    "AsyncClient", "AsyncJob", "Client", "ClientError", "Column", "Conflict", "Dataset",
    "InvalidRequest", "Job", "JobCancelled", "JobError", "JobFailed", "NotFound",
    "PayloadTooLarge", "ProblemError", "Progress", "Retry", "ServerError", "ServiceUnavailable",
    "ServiceUnreachable", "TooManyRequests", "Unauthorized", "UnexpectedAnswer", "WaitTimeout",
    "__version__",
]
