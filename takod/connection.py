"""One NDJSON connection, client or worker: lines in, replies out.

Replies are queued and written by one task, so replies to requests that
finish in the same pass go out in one write. A line over the size limit is
answered with `too_large` and the rest of it is discarded; the connection
stays usable.

The writer thread may also write a worker's acknowledgements straight to the
socket (`send_threadsafe`), so a checkpoint's reply does not wait for trio
to wake up: one lock orders those writes with the write loop's.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
from collections.abc import AsyncIterator

import trio

from tako._errors import LineTooLarge

_CHUNK = 1 << 16
MAX_BACKLOG = 16 * 1024 * 1024  # a peer that stops reading its replies is cut off past this


class Connection:
    def __init__(self, stream: trio.abc.Stream, *, max_line: int) -> None:
        self.stream = stream
        self.max_line = max_line
        self._outbox: list[bytes] = []
        self._queued = 0
        self._kick = trio.Event()
        self._finishing = False
        self._abort = trio.CancelScope()
        self.closed = False
        self._lock = threading.Lock()  # the outbox, `_writing` and `closed`, across threads
        self._writing = False  # the write loop has bytes in flight: others queue behind
        self._token = trio.lowlevel.current_trio_token()
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1

    def send(self, data: bytes) -> None:
        with self._lock:
            self._queue(data)

    def _queue(self, data: bytes) -> None:
        if self.closed:
            return
        self._outbox.append(data)
        self._queued += len(data)
        self._wake()

    def _wake(self) -> None:
        """In trio, under the lock: let the write loop run, or hang up on a peer that does
        not read what we write."""
        self._kick.set()
        if self._queued > MAX_BACKLOG:
            self.closed = True
            self._outbox.clear()
            self._abort.cancel()

    def send_threadsafe(self, data: bytes) -> None:
        """From another thread: write now if nothing is queued ahead and the socket takes
        it all without blocking; otherwise queue it for the write loop (in trio)."""
        with self._lock:
            if self.closed:
                return
            if not (self._outbox or self._writing or self._fd < 0):
                try:
                    sent = os.write(self._fd, data)  # non-blocking: trio set the socket so
                except BlockingIOError:
                    sent = 0
                except OSError:
                    return  # the peer is gone; the reader side sees it and cleans up
                if sent == len(data):
                    return
                data = data[sent:]
            self._outbox.append(data)  # in order: anything sent after this queues behind it
            self._queued += len(data)
        self._token.run_sync_soon(self._wake_write_loop)

    def _wake_write_loop(self) -> None:
        with self._lock:
            if not self.closed:
                self._wake()

    def finish(self) -> None:
        """Let the write loop end once everything queued has been written."""
        self._finishing = True
        self._kick.set()

    def unread(self) -> int:
        """Bytes the peer has sent that nobody has read yet (FIONREAD).

        A supervisor that was frozen (SIGSTOP, swap, a long pause) has not read
        what its workers said meanwhile: their heartbeats are here, not lost."""
        if self._fd < 0 or self.closed:
            return 0
        try:
            raw = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])

    @property
    def backlog(self) -> int:
        """Bytes queued but not yet written (a client that never reads grows this)."""
        return self._queued

    async def write_loop(self) -> None:
        with self._abort:
            await self._write_loop()
        if self.closed:
            with trio.CancelScope(shield=True):
                await self.aclose()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._kick.wait()
                with self._lock:
                    self._kick = trio.Event()
                    data = b"".join(self._outbox)
                    self._outbox.clear()
                    self._queued = 0
                    self._writing = bool(data)
                if data:
                    try:
                        await self.stream.send_all(data)
                    finally:
                        with self._lock:
                            self._writing = False
                if self._finishing and not self._outbox:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            with self._lock:
                self.closed = True

    async def lines(self) -> AsyncIterator[bytes | LineTooLarge]:
        """Yield each complete line, or a LineTooLarge for a line over the limit."""
        buf = bytearray()
        skipping = False
        while True:
            try:
                chunk = await self.stream.receive_some(_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not chunk:
                return
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    if not skipping:
                        buf += chunk[start:]
                        if len(buf) > self.max_line:
                            buf.clear()
                            skipping = True
                    break
                if skipping:
                    skipping = False
                    yield LineTooLarge(
                        f"request line over the {self.max_line}-byte limit; it was discarded"
                    )
                else:
                    buf += chunk[start:nl]
                    if len(buf) > self.max_line:
                        yield LineTooLarge(
                            f"request line over the {self.max_line}-byte limit; it was discarded"
                        )
                    elif buf.strip():
                        yield bytes(buf)
                    buf.clear()
                start = nl + 1

    async def aclose(self) -> None:
        with self._lock:  # no thread writes to the socket's fd once it may be reused
            self.closed = True
        await self.stream.aclose()
