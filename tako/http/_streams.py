"""Live changes as server-sent events: the current state first, then one event per change.

Each stream holds one `watch` request at a time on takod: takod answers it
when the object's fingerprint moves (a step saved, a park, a decision), so
nothing polls the database per client. A `watch` that times out with no
change becomes a comment line, which keeps proxies from closing an idle
stream and lets the server notice a client that went away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tako._errors import TakoError
from tako._protocol import Watch
from tako._records import ApprovalView, RunView
from tako._replies import WatchApprovalReply, WatchRunReply
from tako.http._access import Access
from tako.http._api import error_response
from tako.http._link import TakodLink

KEEPALIVE = 15.0  # seconds between comment lines on a quiet stream
_encoder = msgspec.json.Encoder()


def sse(event: str, data: Any) -> bytes:
    """One event; JSON has no raw newlines, so the data is one `data:` line."""
    return b"event: " + event.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


async def watch(link: TakodLink, ask: Watch) -> AsyncIterator[bytes]:
    """The events of one run (`ask.run_id`) or approval (`ask.key`), as takod sent them."""
    ask.timeout = KEEPALIVE
    reply: type[WatchRunReply[RunView] | WatchApprovalReply[ApprovalView]]
    reply = WatchApprovalReply[ApprovalView] if ask.run_id is None else WatchRunReply[RunView]
    while True:
        watched = await link.call(ask, reply)
        if not watched.changed:
            yield b": keep-alive\n\n"
            continue
        ask.fingerprint = watched.fingerprint
        if isinstance(watched, WatchRunReply):
            yield sse("run", watched.run)
        else:
            yield sse("approval", watched.approval)


class Streams:
    def __init__(self, link: TakodLink, access: Access) -> None:
        self.link = link
        self.access = access

    async def run(self, request: Request) -> Response:
        return await self._stream(request, Watch(run_id=request.path_params["run_id"]))

    async def approval(self, request: Request) -> Response:
        return await self._stream(request, Watch(key=request.path_params["key"]))

    async def _stream(self, request: Request, ask: Watch) -> Response:
        try:
            actor = await self.access.actor(request)
            actor.require("read")
            events = watch(self.link, ask)
            first = await anext(events)  # an unknown id is a 404, not an empty stream
        except TakoError as exc:
            return error_response(exc)

        async def body() -> AsyncIterator[bytes]:
            yield first
            async for event in events:
                yield event

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
