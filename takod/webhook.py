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
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger("takod.webhook")
BACKOFF_BASE, BACKOFF_CAP = 0.5, 300.0
Read = Callable[..., Awaitable[Any]]
Write = Callable[..., Awaitable[Any]]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class Webhook:
    def __init__(
        self,
        url: str,
        secret: str | None,
        read: Read,
        write: Write,
        delivered: Callable[[], None] = lambda: None,
    ) -> None:
        """`delivered` is told when an event was delivered: the first one adds `notified`
        to its request's history, which live pages of that request show."""
        self.url = url
        self.secret = secret
        self._read = read
        self._write = write
        self._delivered = delivered
        self._kick = trio.Event()

    def kick(self) -> None:
        """Something was added to the outbox."""
        self._kick.set()

    async def run(self) -> None:
        while True:
            self._kick = trio.Event()
            now = int(time.time() * 1000)
            for event_id, body, attempts in await self._read(due_events, "webhook", now):
                await self._deliver(event_id, bytes(body), attempts)
            next_at = await self._read(next_attempt, "webhook")
            delay = 60.0 if next_at is None else max(0.0, (next_at - time.time() * 1000) / 1000)
            with trio.move_on_after(delay):
                await self._kick.wait()

    async def _deliver(self, event_id: str, body: bytes, attempts: int) -> None:
        timestamp = str(int(time.time()))
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
        now = int(time.time() * 1000)
        if error is None:
            await self._write(mark_delivered, "webhook", event_id, now)
            self._delivered()
            return
        delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempts, 20))
        delay *= 1 + random.uniform(-0.2, 0.2)
        log.warning("webhook delivery of %s failed (%s); retrying in %.1fs", event_id, error, delay)
        await self._write(mark_failed, "webhook", event_id, error, now + int(delay * 1000))


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


# -- outbox queries (run on the read connection or inside the committer) ------------------


def due_events(conn: Any, target: str, now: int) -> list[tuple[str, bytes, int]]:
    """For each request, its oldest undelivered event to `target`, if due: order per request."""
    rows = conn.execute(
        "SELECT o.id, o.body, o.attempts FROM outbox o WHERE o.target = ?"
        " AND o.delivered_at IS NULL AND o.next_at <= ? AND o.seq = (SELECT MIN(seq)"
        " FROM outbox WHERE key = o.key AND target = o.target AND delivered_at IS NULL)"
        " ORDER BY o.seq LIMIT 100",
        (target, now),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def next_attempt(conn: Any, target: str) -> int | None:
    row = conn.execute(
        "SELECT MIN(next_at) FROM outbox WHERE target = ? AND delivered_at IS NULL", (target,)
    ).fetchone()
    return None if row is None else row[0]


def mark_delivered(conn: Any, target: str, event_id: str, now: int) -> None:
    conn.execute(
        "UPDATE outbox SET delivered_at = ? WHERE id = ? AND target = ?", (now, event_id, target)
    )
    key, n = event_id.rsplit("#", 1)
    if n == "1":  # the `requested` event: the request's history says people were told
        conn.execute(
            "INSERT INTO approval_history (key, at, event, reason) VALUES (?, ?, 'notified', ?)",
            (key, now, target),
        )


def mark_failed(conn: Any, target: str, event_id: str, error: str, next_at: int) -> None:
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ?"
        " WHERE id = ? AND target = ?",
        (error, next_at, event_id, target),
    )
