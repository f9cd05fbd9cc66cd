"""A real headless Chromium (Debian's ``chromium``, driven by Playwright without a browser of its
own) against a real ``dvrl serve`` process on PostgreSQL with a Celery worker: keys required.

Screenshots go OUTSIDE the source tree: to ``$DVRL_TEST_ARTIFACTS`` or a new temporary
directory, printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, api_key, free_port, wait_until_up

CHROMIUM = os.environ.get("DVRL_TEST_CHROMIUM", "/usr/bin/chromium")
# offline and quiet: no sandbox (root in CI), no GPU, no calls home of the browser's own
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
_artifacts: list[Path] = []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots and downloads go (never inside the repository)."""
    chosen = os.environ.get("DVRL_TEST_ARTIFACTS")
    path = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="dvrl-ui-"))
    path.mkdir(parents=True, exist_ok=True)
    assert not path.resolve().is_relative_to(ROOT), "artefacts must stay out of the tree"
    _artifacts.append(path)
    return path


def pytest_terminal_summary(terminalreporter) -> None:
    for path in _artifacts:
        terminalreporter.write_line(f"dashboard screenshots: {path}")


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory) -> Iterator:
    """Chromium with a fresh profile; each new page (tab) has its own sessionStorage."""
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900},
            accept_downloads=True)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def server(service_env, celery_worker, tmp_path) -> Iterator[str]:
    """``dvrl serve`` on PostgreSQL + Redis (keys required) with a real Celery worker; its
    base URL."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = os.environ | {"DVRL_PROGRESS_INTERVAL_S": "0.2"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "dvrl_cli", "serve", "--port",
                                    str(port)], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, process, log=log_path)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def api_as(server):
    """httpx clients of the server, one per owner, each with a new key."""
    clients: list[httpx.Client] = []

    def make(owner: str) -> httpx.Client:
        key = api_key(owner)
        client = httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"},
                              timeout=60)
        client.key = key  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def sign_in(page, base: str, key: str) -> None:
    """The first visit asks for the key; the page then draws what was asked for."""
    page.goto(f"{base}/ui")
    page.wait_for_selector("#key-form")
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-form", state="detached")


class RequestLog:
    """Every URL a page asked for, to prove that nothing left the local server."""

    def __init__(self, page, base: str) -> None:
        self.base = base
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))

    def external(self) -> list[str]:
        local = (self.base + "/", "data:", "blob:")
        return [url for url in self.urls if not url.startswith(local)]


def save_screenshot(page, artifacts: Path, name: str, **options) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path


def copy_artifact(source: str | Path, artifacts: Path, name: str) -> Path:
    target = artifacts / name
    shutil.copyfile(source, target)
    return target
