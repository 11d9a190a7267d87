"""`tako.http`: the HTTP API, approval links and the approver's web pages, as one ASGI app.

    import tako.http
    app = tako.http.app()                      # takod found as the client finds it
    app = tako.http.app(socket="/srv/shop/.tako/tako.sock", authenticate=current_user)

Mount it in an existing web app (Starlette's `Mount("/tako", app=...)`,
FastAPI's `app.mount(...)`, Django's ASGI router), or let `tako dev` serve it
on 127.0.0.1:8787. It is a client of takod like any other: it reaches the
store only through the supervisor's socket.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tako._errors import TakoError
from tako._protocol import Metrics, Status
from tako._replies import MetricsReply, StatusReply
from tako.http._access import Access, Authenticate
from tako.http._api import JsonApi, error_response, json_response
from tako.http._link import TakodLink
from tako.http._openapi import openapi_document
from tako.http._pages import Pages
from tako.http._streams import Streams

__all__ = ["app"]


def app(
    *,
    socket: str | os.PathLike[str] | None = None,
    authenticate: Authenticate | None = None,
    title: str = "tako",
) -> Starlette:
    """The ASGI application.

    `socket`: takod's socket (default: `$TAKO_SOCKET`, else the app folder's
    `.tako/tako.sock`). `authenticate(request) -> actor name | None` (sync or
    async): your own login; the name it returns is the actor of decisions.
    `title`: the name shown on the pages."""
    link = TakodLink(socket)
    access = Access(link, authenticate)
    api = JsonApi(link, access)
    streams = Streams(link, access)
    pages = Pages(link, access, title)
    document = openapi_document(title)

    async def openapi(request: Request) -> Response:
        return json_response(document)

    async def healthz(request: Request) -> Response:
        try:
            status = await link.call(Status(), StatusReply)
        except TakoError as exc:
            return json_response({"status": "down", "error": exc.message}, 503)
        return json_response({"status": "ok", "supervisor": status.supervisor})

    async def metrics(request: Request) -> Response:
        """Prometheus text; with tokens in use, a token with the `read` scope."""
        try:
            (await access.actor(request)).require("read")
            reply = await link.call(Metrics(), MetricsReply)
        except TakoError as exc:
            return error_response(exc)
        return Response(reply.text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        """404 and 405; a 405 keeps its `Allow` header (the methods the route takes)."""
        status = getattr(exc, "status_code", 404)
        headers = getattr(exc, "headers", None)
        if request.url.path.startswith(("/api/", "/healthz", "/metrics")):
            code = "not_found" if status == 404 else "invalid"
            text = "no such route" if status == 404 else "method not allowed on this route"
            return JSONResponse({"error": {"code": code, "message": text}}, status, headers)
        heading = "Not found" if status == 404 else "Method not allowed"
        page = pages.message(request, heading, "There is no page here.", status)
        page.headers.update(headers or {})
        return page

    routes = [
        *api.routes(),
        Route("/api/runs/{run_id}/stream", streams.run),
        Route("/api/approvals/{key}/stream", streams.approval),
        Route("/api/openapi.json", openapi),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        *pages.routes(),
    ]
    starlette = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    starlette.state.link = link
    return starlette
