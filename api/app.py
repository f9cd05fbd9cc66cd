"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import dispatch
from service.settings import Settings, get_settings

from . import problems
from .limits import BodyLimit
from .routes import datasets, health, jobs, results


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if settings.embedded and app.state.run_embedded_worker:
        dispatch.start_embedded_worker()
    yield
    if settings.embedded:
        dispatch.stop_embedded_worker()


def auth_required(settings: Settings, loopback: bool = True) -> bool:
    """Whether API keys are required: always when configured so, never when turned off, and by
    default unless the embedded service listens on the loopback interface only."""
    if settings.auth != "auto":
        return settings.auth == "required"
    return not (settings.embedded and loopback)


def create_app(run_embedded_worker: bool = True, require_keys: bool | None = None) -> FastAPI:
    """The API. ``require_keys`` None: decided by ``auth_required`` for a loopback server."""
    app = FastAPI(
        title="DVRL data valuation",
        version="0.1.0",
        description="Upload a training table, start a valuation job, poll it, and download a "
        "value for every row (DVRL: Yoon, Arik, Pfister, ICML 2020). Errors are RFC 9457 "
        "application/problem+json.",
        lifespan=lifespan,
    )
    app.state.run_embedded_worker = run_embedded_worker
    app.state.auth_required = auth_required(get_settings()) if require_keys is None \
        else require_keys
    problems.install(app)
    app.add_middleware(BodyLimit)
    for module in (datasets, jobs, results, health):
        app.include_router(module.router)
    return app
