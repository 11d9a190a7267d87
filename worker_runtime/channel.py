"""The worker's end of its connection to takod: requests out, replies and assignments in.

Requests from every run in flight are queued and written together, one
socket write per loop pass, so that takod reads them in one go and commits
them in one transaction. Replies find their caller by request id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import ByteStream

from tako._errors import StorageError
from tako._protocol import NULL, Assign, encode
from worker_runtime.loops import Loop, Waiter

log = logging.getLogger("tako.worker")
_ASSIGN_PREFIX = b'{"op":"assign"'


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
    def __init__(self, stream: ByteStream, loop: Loop) -> None:
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
        """Send one request and wait for its reply."""
        self._next_id += 1
        msg.id = self._next_id
        waiter = self._waiting[self._next_id] = self._loop.waiter()
        self._outbox.append(encode(msg) + b"\n")
        self._kick.set(None)
        reply: Reply = await waiter.wait()
        return reply

    async def persist(self, msg: Any) -> Reply:
        """Send a write that must not be lost (a checkpoint, a park, a run's end): while
        takod answers that its disk is full, wait and send it again. The run keeps its
        slot meanwhile, and heartbeats keep its lease."""
        delay = 0.5
        while True:
            reply = await self.request(msg)
            if reply.error is None or reply.error.code != StorageError.code:
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
                await self._stream.send(data)

    async def read_loop(self, on_assign: Callable[[Assign], None]) -> None:
        """Dispatch incoming lines until takod closes the connection."""
        buf = b""
        while True:
            try:
                chunk = await self._stream.receive(1 << 16)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(_ASSIGN_PREFIX):
                    on_assign(_assign.decode(line))
                    continue
                reply = _reply.decode(line)
                waiter = self._waiting.pop(reply.id, None)
                if waiter is not None:
                    waiter.set(reply)
