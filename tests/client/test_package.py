"""dvrl_client stands alone: importable where torch and the service are not installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dvrl_client
from tests.conftest import ROOT

HEAVY = ("torch", "lightgbm", "sklearn", "service", "api", "dvrl_core", "worker", "celery",
         "sqlalchemy", "fastapi", "pandas")
# a finder ahead of every other: importing any of HEAVY fails, as on a machine without them
BLOCK = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_importing_the_client_needs_no_torch_service_api_or_dvrl_core():
    code = BLOCK + """
from dvrl_client import AsyncClient, Client
Client("http://127.0.0.1:1", api_key="k").close()
import asyncio
asyncio.run(AsyncClient("http://127.0.0.1:1").aclose())
print(sorted(m for m in sys.modules if m.split('.')[0] in """ + repr(HEAVY) + "))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # not even pandas until a table is built


def test_the_public_names():
    assert sorted(dvrl_client.__all__) == sorted([
        "AsyncClient", "AsyncJob", "Client", "ClientError", "Column", "Conflict", "Dataset",
        "InvalidRequest", "Job", "JobCancelled", "JobError", "JobFailed", "NotFound",
        "PayloadTooLarge", "ProblemError", "Progress", "Retry", "ServerError",
        "ServiceUnavailable", "ServiceUnreachable", "TooManyRequests", "Unauthorized",
        "UnexpectedAnswer", "WaitTimeout", "__version__"])


def test_a_url_without_a_scheme_is_refused_at_once():
    with pytest.raises(ValueError, match="http://127.0.0.1:8000"):
        dvrl_client.Client("127.0.0.1:8000")
    for url, why in (("ftp://host", "http or https, not ftp"), ("http://", "names no host"),
                     ("http://127.0.0.1:99999", "a port is 1 to 65535"),
                     ("http://host?x=1", "without \\?query"),
                     # a page of the service, not its address: every call was a bare 404
                     ("http://127.0.0.1:8000/v1/", "without /v1 .*: http://127.0.0.1:8000$"),
                     ("http://host/ui", "without /ui")):
        with pytest.raises(ValueError, match=why):
            dvrl_client.Client(url)
    with pytest.raises(ValueError, match="characters a key never has"):
        dvrl_client.Client("http://127.0.0.1:8000", "dvrl_k\u00e9y")
