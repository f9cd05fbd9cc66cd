"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import dispatch
from service.settings import Settings, get_settings

from . import openapi, problems, ui
from .deps import one_value_each
from .limits import BodyLimit
from .methods import HeadAsGet
from .metrics import Metrics, RequestMetrics
from .routes import datasets, health, jobs, results, webhooks


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if settings.embedded and app.state.run_embedded_worker:
        dispatch.start_embedded_worker()
    yield
    if settings.embedded:
        dispatch.stop_embedded_worker()


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def auth_required(settings: Settings, listen_host: str | None) -> bool:
    """Whether API keys are required: the one place this is decided, for every way the app is
    started. Always when configured so, never when turned off, and by default unless the
    embedded service listens on the loopback interface only. ``listen_host`` is the interface
    the server listens on when the caller knows it (``dvrl serve``); None (``uvicorn --factory
    api.app:create_app``, another ASGI server) counts as reachable from anywhere."""
    if settings.auth != "auto":
        return settings.auth == "required"
    return not (settings.embedded and listen_host in LOOPBACK)


def create_app(run_embedded_worker: bool = True, listen_host: str | None = None) -> FastAPI:
    """The API; ``listen_host``: the interface it will be served on, if known (see
    ``auth_required``)."""
    app = FastAPI(
        title="DVRL data valuation",
        version="0.1.0",
        description="Upload a training table, start a valuation job, poll it, and download a "
        "value for every row (DVRL: Yoon, Arik, Pfister, ICML 2020). Errors are RFC 9457 "
        "application/problem+json.",
        lifespan=lifespan, docs_url=None, redoc_url=None,  # /docs from the package: api.ui
    )
    app.state.run_embedded_worker = run_embedded_worker
    app.state.auth_required = auth_required(get_settings(), listen_host)
    problems.install(app)
    openapi.install(app)
    app.state.metrics = Metrics()
    app.add_middleware(BodyLimit)
    app.add_middleware(HeadAsGet)  # inside RequestMetrics: a HEAD is counted as a HEAD
    # outermost: it times and counts the 413s that BodyLimit answers too
    app.add_middleware(RequestMetrics, metrics=app.state.metrics, routed=app)
    for module in (datasets, jobs, results, webhooks, health):  # the dashboard's pages aside
        app.include_router(module.router, dependencies=[Depends(one_value_each)])
    ui.install(app)
    return app
