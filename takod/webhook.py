"""Delivers approval events from the outbox to the app's webhook, signed, at least once.

Events are written to the outbox in the same transaction as the change they
describe (see approvals.py). This task POSTs them in order per request: a
request's next event waits until the previous one is delivered. A failed
delivery is retried with backoff (0.5 s doubling, ±20 %, at most 5 min), so a
receiver that is down for a while gets everything once it is back. A failing
receiver never blocks or fails a run. Each POST carries:

    X-Tako-Event-Id:  <key>#<n>   (stable: dedupe on it)
    X-Tako-Timestamp: <unix seconds>
    X-Tako-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import ssl
import urllib.parse
from collections.abc import Callable

import trio

from tako.takod.scheduler import Clock
from tako.takod.storage.interface import Backend

log = logging.getLogger("takod.webhook")
BACKOFF_BASE, BACKOFF_CAP = 0.5, 300.0
TARGET = "webhook"
LEASE_MS = 60_000  # an event taken for delivery is another supervisor's again after this


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class Webhook:
    def __init__(
        self,
        url: str,
        secret: str | None,
        backend: Backend,
        clock: Clock,
        delivered: Callable[[], None] = lambda: None,
    ) -> None:
        """`delivered` is told when an event was delivered: the first one adds `notified`
        to its request's history, which live pages of that request show."""
        self.url = url
        self.secret = secret
        self.backend = backend
        self.clock = clock
        self._delivered = delivered
        self._taking = False
        self._kick = trio.Event()

    def kick(self) -> None:
        """Something was added to the outbox."""
        self._kick.set()

    def idle(self) -> bool:
        """No event taken from the outbox is still being delivered."""
        return not self._taking

    async def run(self) -> None:
        while True:
            self._kick = trio.Event()
            now = self.clock.now_ms()
            self._taking = True
            try:
                for event_id, body, attempts in await self.backend.write(
                    lambda tx: tx.take_events(TARGET, now, LEASE_MS)  # noqa: B023 - awaited
                ):
                    await self._deliver(event_id, body, attempts)
            finally:
                self._taking = False
            next_at = await self.backend.read(lambda r: r.next_attempt(TARGET))
            delay = 60.0 if next_at is None else max(0.0, (next_at - self.clock.now_ms()) / 1000)
            with trio.move_on_after(delay):
                await self._kick.wait()

    async def _deliver(self, event_id: str, body: bytes, attempts: int) -> None:
        timestamp = str(self.clock.now_ms() // 1000)
        headers = {
            "Content-Type": "application/json",
            "X-Tako-Event-Id": event_id,
            "X-Tako-Timestamp": timestamp,
        }
        if self.secret:
            headers["X-Tako-Signature"] = signature(self.secret, timestamp, body)
        try:
            with trio.fail_after(10):
                status = await post(self.url, body, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except (OSError, trio.TooSlowError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock.now_ms()
        if error is None:
            await self.backend.write(lambda tx: tx.mark_delivered(TARGET, event_id, now))
            self._delivered()
            return
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempts, 20))
        delay *= 1 + random.uniform(-0.2, 0.2)
        log.warning("webhook delivery of %s failed (%s); retrying in %.1fs", event_id, error, delay)
        next_at = now + int(delay * 1000)
        await self.backend.write(lambda tx: tx.mark_failed(TARGET, event_id, error, next_at))


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """A minimal HTTP/1.1 POST; returns the status code. http and https."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook URL {url!r} must be http:// or https://")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
    if parts.scheme == "https":
        stream = trio.SSLStream(
            stream, ssl.create_default_context(), server_hostname=parts.hostname
        )
    async with stream:
        lines = [f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1"]
        lines += [f"Host: {parts.netloc}", f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        response = b""
        while b"\r\n" not in response:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            response += chunk
    status_line = response.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP response: {response[:60]!r}")
    return int(status_line[1])
