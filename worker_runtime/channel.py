"""The worker's end of its connection to takod: requests out, replies and assignments in.

Requests from every run in flight are queued and written together, one
socket write per loop pass, so that takod reads them in one go and commits
them in one transaction. Replies find their caller by request id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from anyio.abc import ByteStream

from tako._protocol import NULL, Assign, encode

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


class _Slot:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: Reply | None = None


class Channel:
    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._next_id = 0
        self._slots: dict[int, _Slot] = {}
        self._outbox: list[bytes] = []
        self._kick = anyio.Event()

    async def request(self, msg: Any) -> Reply:
        """Send one request and wait for its reply."""
        self._next_id += 1
        msg.id = self._next_id
        slot = _Slot()
        self._slots[self._next_id] = slot
        self._outbox.append(encode(msg) + b"\n")
        self._kick.set()
        await slot.event.wait()
        assert slot.reply is not None
        return slot.reply

    async def write_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick = anyio.Event()
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
                slot = self._slots.pop(reply.id, None)
                if slot is not None:
                    slot.reply = reply
                    slot.event.set()
