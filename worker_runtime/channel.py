"""The worker's end of its connection to takod: requests out, replies and assignments in.

Requests from every run in flight are queued and written together, one
socket write per loop pass, so that takod reads them in one go and commits
them in one transaction. Replies find their caller by request id.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import ByteStream

from tako._errors import StorageError, SupervisorUnavailable
from tako._protocol import NULL, Assign, encode_safely
from tako.worker_runtime.loops import Loop, Waiter

log = logging.getLogger("tako.worker")
_ASSIGN_PREFIX = b'{"op":"assign"'


_CANNOT_WRITE = (StorageError.code, SupervisorUnavailable.code)


class WireError(msgspec.Struct):
    code: str
    message: str


class Reply(msgspec.Struct):
    id: int
    ok: bool
    error: WireError | None = None
    cancel: bool = False
    parked: bool = False
    result: msgspec.Raw = NULL


_reply = msgspec.json.Decoder(Reply)
_assign = msgspec.json.Decoder(Assign)


class Channel:
    """Over an anyio stream: what the trio runtime uses."""

    def __init__(self, stream: ByteStream | None, loop: Loop) -> None:
        self._stream = stream
        self._loop = loop
        self._next_id = 0
        self._waiting: dict[int, Waiter] = {}
        self._outbox: list[bytes] = []
        self._kick = loop.waiter()

    @property
    def loop(self) -> Loop:
        return self._loop

    async def request(self, msg: Any) -> Reply:
        """Send one request and wait for its reply. Its text fields may hold anything a
        user's code produced (messages, tracebacks, names): they are sent as valid UTF-8."""
        self._next_id += 1
        msg.id = self._next_id
        waiter = self._waiting[self._next_id] = self._loop.waiter()
        self._send(encode_safely(msg) + b"\n")
        reply: Reply = await waiter.wait()
        return reply

    def _send(self, line: bytes) -> None:
        self._outbox.append(line)
        self._kick.set(None)

    async def persist(self, msg: Any) -> Reply:
        """Send a write that must not be lost (a checkpoint, a park, a run's end): while
        takod answers that it cannot write (its disk is full, its database is away),
        wait and send it again. The run keeps its slot meanwhile, and heartbeats keep
        its lease; if the outage outlasts it, the run is taken back and the next
        answer says so (stale)."""
        delay = 0.5
        while True:
            reply = await self.request(msg)
            if reply.error is None or reply.error.code not in _CANNOT_WRITE:
                return reply
            log.warning("takod cannot write (%s); retrying in %.1fs", reply.error.message, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def write_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick = self._loop.waiter()
            data = b"".join(self._outbox)
            self._outbox.clear()
            if data:
                assert self._stream is not None
                await self._stream.send(data)

    async def read_loop(self, on_assign: Callable[[Assign], None]) -> None:
        """Dispatch incoming lines until takod closes the connection."""
        assert self._stream is not None
        buf = b""
        while True:
            try:
                chunk = await self._stream.receive(1 << 16)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            buf = self._feed(buf + chunk, on_assign)

    def _feed(self, buf: bytes, on_assign: Callable[[Assign], None]) -> bytes:
        """Dispatch every complete line in `buf`; return what is left of it."""
        *lines, rest = buf.split(b"\n")
        for line in lines:
            if line.startswith(_ASSIGN_PREFIX):
                on_assign(_assign.decode(line))
                continue
            reply = _reply.decode(line)
            waiter = self._waiting.pop(reply.id, None)
            if waiter is not None:
                waiter.set(reply)
        return rest


class AsyncioChannel(Channel, asyncio.Protocol):
    """Over an asyncio transport: what the default runtime uses.

    The transport calls us with bytes as they arrive, and every request made
    during one pass of the event loop goes out in one write at its end: no
    task and no selector churn per message, which measurably matters here
    (anyio's stream re-registers the socket with the selector on each receive)."""

    def __init__(self, loop: Loop) -> None:
        Channel.__init__(self, None, loop)
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._on_assign: Callable[[Assign], None] | None = None  # set by read_loop
        self._flush_scheduled = False
        self._closed = asyncio.Event()

    @classmethod
    async def open(cls, sock: socket.socket, loop: Loop) -> AsyncioChannel:
        channel = cls(loop)
        await asyncio.get_running_loop().connect_accepted_socket(lambda: channel, sock)
        return channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._on_assign is None:  # not reading yet: keep it for read_loop
            self._buf += data
            return
        self._buf = self._feed(self._buf + data, self._on_assign)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    def _send(self, line: bytes) -> None:
        self._outbox.append(line)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = b"".join(self._outbox)
        self._outbox.clear()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def write_loop(self) -> None:
        await self._closed.wait()  # writes go out from _flush; nothing to do here

    async def read_loop(self, on_assign: Callable[[Assign], None]) -> None:
        self._on_assign = on_assign
        if self._buf:
            self._buf = self._feed(self._buf, on_assign)
        await self._closed.wait()
