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
    answer is waited for up to 10 minutes, within ``retry.total_s``: the service parses the
    whole table first); ``retry``: see :class:`~dvrl_client.Retry`."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: Retry | None = None) -> None:
        self.base_url = checked_url(base_url)
        self.retry = retry or Retry()
        self._ops = Operations(self.retry)
        headers = {"User-Agent": f"dvrl-client/{VERSION}"}
        if api_key:
            headers["Authorization"] = f"Bearer {checked_key(api_key)}"
        self._http_options: dict[str, Any] = {
            "base_url": self.base_url, "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"


def checked_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; ValueError unless it is an http(s) URL with a
    host."""
    if "://" not in base_url:
        raise ValueError(f"base_url {base_url!r} needs a scheme, e.g. http://{base_url}")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url {base_url!r} is not a URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise ValueError(f"base_url {base_url!r}: the service speaks http or https, not "
                         f"{url.scheme}")
    if not url.host:
        raise ValueError(f"base_url {base_url!r} names no host")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise ValueError(f"base_url {base_url!r}: a port is 1 to 65535")
    if url.query or url.fragment:
        raise ValueError(f"base_url {base_url!r}: the service's address, without ?query or "
                         "#fragment")
    root = base_url.rstrip("/")
    path = url.path.rstrip("/")
    # a page of the service, not its address (a service under a path prefix may end in /v1)
    for page in ("/v1", "/docs", "/ui"):
        if path == page or (page != "/v1" and path.endswith(page)):
            raise ValueError(f"base_url {base_url!r}: the service's address, without {page} "
                             f"(the client adds /v1/...): {root[:-len(page)]}")
    return root


def checked_key(api_key: str) -> str:
    """``api_key``, or ValueError when an HTTP header cannot carry it (a line break, a
    non-ASCII character: a key is printable ASCII, as `dvrl keys create` prints it)."""
    if not all(33 <= ord(char) < 127 for char in api_key):
        raise ValueError("the API key holds characters a key never has (spaces, line breaks "
                         "or non-ASCII); copy it again as `dvrl keys create` printed it")
    return api_key


# cancelling a job after Ctrl-C: retried briefly (a server restarting), not for minutes
CANCEL_RETRY = Retry(total_s=10.0, unreachable_s=10.0)


def spec_of(spec: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """A job spec from a dict, keyword arguments, or both (keywords win)."""
    return dict(spec or {}) | fields
