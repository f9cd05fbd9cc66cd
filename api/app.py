"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import dispatch
from service.settings import get_settings

from . import problems
from .routes import datasets, health, jobs, results


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    if settings.embedded and app.state.run_embedded_worker:
        dispatch.start_embedded_worker()
    yield
    if settings.embedded:
        dispatch.stop_embedded_worker()


def create_app(run_embedded_worker: bool = True) -> FastAPI:
    app = FastAPI(
        title="DVRL data valuation",
        version="0.1.0",
        description="Upload a training table, start a valuation job, poll it, and download a "
        "value for every row (DVRL: Yoon, Arik, Pfister, ICML 2020). Errors are RFC 9457 "
        "application/problem+json.",
        lifespan=lifespan,
    )
    app.state.run_embedded_worker = run_embedded_worker
    problems.install(app)
    for module in (datasets, jobs, results, health):
        app.include_router(module.router)
    return app
