"""Wake-ups between supervisors: PostgreSQL LISTEN/NOTIFY on one channel per app.

A supervisor tells the others what they cannot see in their own memory: a run
changed (a `wait` or `watch` held elsewhere may be answered), something falls
due earlier (their timers), runs are ready for whoever has room, approvals
changed (their deliveries and pages). Notices are coalesced: whatever is told
while the previous NOTIFY is on its way goes out as the next one. A listener that lost its
connection may have missed notices, so on reconnecting it says so (`missed`)
and every waiter reads again; a slow sweep (see takod/membership.py) stays the
safety net. Nothing is lost if a notice is: it only makes a wake-up later.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

import psycopg
import trio

from tako.takod.storage.interface import Peers
from tako.takod.storage.postgres.connection import conninfo, schema_of

log = logging.getLogger("takod")
MAX_PAYLOAD = 7000  # bytes of one NOTIFY payload (PostgreSQL's limit is 8000)
RECONNECT_EVERY = 1.0


class Notices:
    def __init__(self, url: str, app: str) -> None:
        self.url = url
        self.channel = schema_of(app)
        self.sender = secrets.token_hex(6)  # who we are: our own notices are not for us
        self._runs: set[str] = set()
        self._due: int | None = None
        self._flags: set[str] = set()  # "ready", "approvals"
        self._wake = trio.Event()

    def tell(self, kind: str, arg: str = "") -> None:
        if kind == "run":
            self._runs.add(arg)
        elif kind == "due":
            at = int(arg)
            self._due = at if self._due is None else min(self._due, at)
        else:
            self._flags.add(kind)
        self._wake.set()

    def _payloads(self) -> list[str]:
        lines = [f"due {self._due}"] if self._due is not None else []
        lines += sorted(self._flags)
        lines += [f"run {r}" for r in sorted(self._runs)]
        self._runs, self._due, self._flags = set(), None, set()
        out: list[str] = []
        head = f"from {self.sender}"
        for line in lines:
            if out and len(out[-1]) + len(line) + 1 <= MAX_PAYLOAD:
                out[-1] += "\n" + line
            else:
                out.append(head + "\n" + line)
        return out

    async def run(self, peers: Peers) -> None:
        """Send what is told, and hand what others tell to `peers`, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send)
            nursery.start_soon(self._listen, peers)

    async def _send(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            payloads = self._payloads()
            try:
                if conn is None or conn.broken or conn.closed:
                    conn = await trio.to_thread.run_sync(self._connect)
                await trio.to_thread.run_sync(self._notify, conn, payloads)
            except psycopg.Error as exc:  # the database is away: a later sweep catches up
                log.warning("could not tell the other supervisors (%s)", str(exc).strip())
                conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(conninfo(self.url), autocommit=True)

    def _notify(self, conn: psycopg.Connection[Any], payloads: list[str]) -> None:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))

    async def _listen(self, peers: Peers) -> None:
        token = trio.lowlevel.current_trio_token()
        stop = threading.Event()
        first = True
        while True:
            try:
                conn = await trio.to_thread.run_sync(self._connect)
            except psycopg.Error:
                await trio.sleep(RECONNECT_EVERY)
                continue
            try:
                conn.execute(f'LISTEN "{self.channel}"')
                if not first:
                    peers.missed()  # notices sent while we were away are gone
                first = False
                await trio.to_thread.run_sync(
                    self._receive, conn, peers, token, stop, abandon_on_cancel=True
                )
            except psycopg.Error as exc:
                log.warning("lost the wake-ups of other supervisors (%s)", str(exc).strip())
            finally:
                stop.set()
                conn.close()
                stop = threading.Event()
            await trio.sleep(RECONNECT_EVERY)

    def _receive(
        self,
        conn: psycopg.Connection[Any],
        peers: Peers,
        token: trio.lowlevel.TrioToken,
        stop: threading.Event,
    ) -> None:
        """In a thread: each notice is handed to trio. Returns when the connection drops."""
        while not stop.is_set():
            for notice in conn.notifies(timeout=1.0):
                head, _, body = notice.payload.partition("\n")
                if head == f"from {self.sender}":
                    continue
                try:
                    token.run_sync_soon(dispatch, peers, body)
                except trio.RunFinishedError:
                    return


def dispatch(peers: Peers, body: str) -> None:
    """In trio: what another supervisor told us."""
    for line in body.splitlines():
        kind, _, arg = line.partition(" ")
        if kind == "run":
            peers.run_changed(arg)
        elif kind == "due":
            peers.due(int(arg))
        elif kind == "ready":
            peers.ready()
        elif kind == "approvals":
            peers.approvals_changed()
