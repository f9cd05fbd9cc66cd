"""What the blocking and the asynchronous client share: the base URL, the key, timeouts and
the retry policy; the operations themselves are in :mod:`.operations`."""

from __future__ import annotations

from typing import Any

import httpx

from .operations import Operations
from .retry import Retry

VERSION = "0.1.0"
Table = Any  # a path (str or os.PathLike) to a CSV or Parquet file, or a pandas DataFrame


class ClientBase:
    """``base_url``: the service, e.g. ``http://127.0.0.1:8000``; ``api_key``: sent as
    ``Authorization: Bearer <key>`` (the embedded service on 127.0.0.1 needs none);
    ``timeout``: seconds for any one network step (connecting takes at most 10; an upload's
    answer may take 10 minutes: the service parses the whole table first); ``retry``: see
    :class:`~dvrl_client.Retry`."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: Retry | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} needs a scheme, e.g. http://{base_url}")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._ops = Operations(self.retry)
        headers = {"User-Agent": f"dvrl-client/{VERSION}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url, "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


def spec_of(spec: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """A job spec from a dict, keyword arguments, or both (keywords win)."""
    return dict(spec or {}) | fields
