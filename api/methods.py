"""HTTP methods as RFC 9110 has them: HEAD wherever GET is (the GET answer's status and headers,
no body: uvicorn leaves the body out of a HEAD answer), and a 405's ``Allow`` listing every
method of the path (Starlette names only those of the first route that matched the path)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: a HEAD request is routed as a GET. The server keeps its own scope,
    which says HEAD, and sends no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = dict(scope, method="GET")
        await self.app(scope, receive, send)


METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The methods some route answers on the request's path, for ``Allow`` (each asked of the
    routes as the router asks: included routers keep their routes to themselves)."""
    routes = request.app.router.routes
    methods = {method for method in METHODS if any(
        route.matches(dict(request.scope, method=method))[0] == Match.FULL for route in routes)}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))
