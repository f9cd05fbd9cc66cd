"""The dashboard (``/ui``) and the API docs (``/docs``), served from files inside the package.

Nothing is loaded from another host, so both work on a machine with no internet access: the
dashboard is plain HTML, CSS and JavaScript modules in ``api/static/ui`` (its charts are SVG
drawn by its own code), and Swagger UI is the npm package ``swagger-ui-dist``, vendored with its
licence in ``api/static/vendor/swagger-ui``. ReDoc is not served.

The dashboard's pages hold no data: the browser asks the same owner-scoped API as any client,
with the API key the user enters (kept in the tab's sessionStorage, sent as a Bearer token), so
it shows what that key's owner may see and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER = "/static/vendor/swagger-ui"
FAVICON = "/static/ui/favicon.svg"
# the pages may load and call only this server; no inline script, no framing
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                           "script-src 'self'; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

router = APIRouter(include_in_schema=False)


def _shell() -> FileResponse:
    """Every dashboard address answers the same page; its script draws the one asked for."""
    return FileResponse(STATIC / "ui" / "index.html", media_type="text/html", headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
def jobs_page() -> FileResponse:
    return _shell()


@router.get("/ui/new")
def new_job_page() -> FileResponse:
    return _shell()


@router.get("/ui/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    return _shell()


@router.get("/ui/{rest:path}")
def other_page(rest: str) -> FileResponse:
    """Any other address under /ui: the page says it has no such page (not a JSON 404)."""
    return _shell()


def install(app: FastAPI) -> None:
    """The dashboard, its assets under ``/static``, and Swagger UI at ``/docs`` (the app is
    created with ``docs_url=None, redoc_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API docs",
            oauth2_redirect_url=oauth2_redirect, swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css", swagger_favicon_url=FAVICON,
            # no call to the public validator service
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False})
        # its "Authorize" box takes a key: no other site may frame it (clickjacking)
        page.headers.update(DOCS_HEADERS)
        return page

    @app.get(oauth2_redirect, include_in_schema=False)
    def docs_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.include_router(router)
    app.mount("/static", _Assets(directory=STATIC), name="static")


DOCS_HEADERS = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class _Assets(StaticFiles):
    """The dashboard's and Swagger UI's files, never sniffed as another type."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
