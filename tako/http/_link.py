"""The HTTP app's way into takod: the socket protocol, from async code on asyncio or trio.

A small pool of connections, one request in flight on each: an HTTP request
borrows one, sends its line, reads its reply line and gives it back. A
connection per concurrent request keeps the code simple and needs no reader
task, so the app works wherever it is mounted (a mounted Starlette app gets
no lifespan events to start one), and a held request (`watch`, `wait`) only
holds its own connection.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import anyio
import msgspec
from anyio.abc import SocketStream

from tako._errors import SupervisorUnavailable
from tako._paths import resolve_socket
from tako._protocol import ClientRequest
from tako._replies import ReplyT, decode_reply

MAX_IDLE = 64  # connections kept for reuse; more may be open while requests are in flight
_encoder = msgspec.json.Encoder()


class _Conn:
    __slots__ = ("buf", "stream")

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def exchange(self, line: bytes) -> bytes:
        await self.stream.send(line)
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                reply = bytes(self.buf[:nl])
                del self.buf[: nl + 1]
                return reply
            self.buf += await self.stream.receive(1 << 16)


class TakodLink:
    """Requests to one supervisor over its unix socket."""

    def __init__(self, socket: str | os.PathLike[str] | None = None) -> None:
        self.socket_path: Path = resolve_socket(socket)
        self._idle: list[_Conn] = []
        self._ids = itertools.count(1)

    async def call(self, request: ClientRequest, reply: type[ReplyT]) -> ReplyT:
        """Send one request; return its reply decoded as `reply`, or raise its typed error.

        The routes ask for takod's own forms (`RunReply[RunView]`), so a run or an
        approval goes back out over HTTP exactly as takod sent it."""
        request.id = next(self._ids)
        return decode_reply(await self._exchange(_encoder.encode(request) + b"\n"), reply)

    async def _exchange(self, line: bytes) -> bytes:
        """One line out, its reply line back, on a pooled connection (one retry on a
        fresh connection when the pooled one turns out to be stale)."""
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            raw = await conn.exchange(line)
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await conn.stream.aclose()
            if not reused:
                raise SupervisorUnavailable(socket_path=str(self.socket_path)) from None
            conn = await self._connect()  # a pooled connection went stale: one fresh try
            try:
                raw = await conn.exchange(line)
            except (OSError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                await conn.stream.aclose()
                raise SupervisorUnavailable(socket_path=str(self.socket_path)) from exc
        except BaseException:
            await anyio.aclose_forcefully(conn.stream)  # cancelled mid-exchange: unusable
            raise
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            await conn.stream.aclose()
        return raw

    async def _connect(self) -> _Conn:
        try:
            stream = await anyio.connect_unix(self.socket_path)
        except OSError:
            raise SupervisorUnavailable(socket_path=str(self.socket_path)) from None
        return _Conn(stream)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.stream.aclose()
