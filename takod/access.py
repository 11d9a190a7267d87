"""The operations behind the HTTP surface: tokens, signed approval links, live changes.

The HTTP app is a client of takod like any other; everything it needs from
the store is one of these socket operations. Tokens live in runs.db (see
tokens.py) and are read on every `access`, so creating or revoking one takes
effect at once. Links are signed with a key that survives restarts: the
`[http] secret_env` variable, else a random key takod writes once to
`<data_dir>/http.secret` (mode 0600). `watch` answers when a run or an
approval changes, woken by the supervisor, never by polling.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from tako._errors import InvalidRequest
from tako._protocol import (
    ApprovalLinks,
    CreateToken,
    GetAccess,
    ListTokens,
    OpenLink,
    RevokeToken,
    Watch,
    ok,
)
from takod import links as signed
from takod import store as db
from takod import tokens
from takod.approvals import read_approval
from takod.config import DEFAULT_LISTEN

if TYPE_CHECKING:
    from takod.supervisor import Supervisor

HttpOp = CreateToken | ListTokens | RevokeToken | GetAccess | ApprovalLinks | OpenLink | Watch
MAX_WATCH = 300.0  # one `watch` holds at most this long; clients ask again
SECRET_FILE = "http.secret"


def fingerprint(obj: Any) -> str:
    """What `watch` compares: the hex SHA-256 of the object as it goes on the wire."""
    return hashlib.sha256(msgspec.json.encode(obj)).hexdigest()


def load_secret(data_dir: Path, env: str) -> bytes:
    """The links' HMAC key: `$env` if set, else the data dir's key, created on first use.

    The key file is written under a temporary name and linked into place, so two
    first uses at once agree on one key and nobody reads a half-written file."""
    given = os.environ.get(env)
    if given:
        return given.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def _link_fields(conn: sqlite3.Connection, key: str) -> tuple[list[str] | None, int | None, int]:
    """What a request's links are made of: its approvers, deadline and creation time."""
    approval = read_approval(conn, key)  # raises approval_not_found
    row = conn.execute(
        "SELECT deadline_at, created_at FROM approvals WHERE key = ?", (key,)
    ).fetchone()
    return approval["approvers"], row[0], row[1]


class Access:
    """Answers the HTTP surface's operations for one supervisor (see `op`)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        settings = supervisor.config.http
        self.configured_url = settings.public_url
        self.public_url = settings.public_url or f"http://{settings.listen or DEFAULT_LISTEN}"
        self._secret: bytes | None = None
        self._secret_lock = threading.Lock()  # first used by the committer's thread or ours
        self._approval_watchers: set[trio.Event] = set()

    def served_at(self, url: str) -> None:
        """The HTTP server is bound at `url`: links point there unless `[http] public_url`
        says otherwise."""
        if self.configured_url is None:
            self.public_url = url

    @property
    def secret(self) -> bytes:
        with self._secret_lock:
            if self._secret is None:
                self._secret = load_secret(self.sup.data_dir, self.sup.config.http.secret_env)
            return self._secret

    def links(
        self, key: str, approvers: list[str] | None, deadline_at: int | None, created_at: int
    ) -> dict[str, dict[str, str]]:
        return signed.links_for(
            self.secret, self.public_url, key, approvers, deadline_at, created_at
        )

    def approvals_changed(self) -> None:
        for event in self._approval_watchers:
            event.set()

    async def op(self, req: HttpOp) -> bytes:
        sup = self.sup
        match req:
            case CreateToken(name=name, scopes=scopes):
                now = sup.clock.now_ms()
                token = await sup._write(tokens.create, sup.store.conn, name, scopes, now)
                return ok(req.id, name=name, token=token, scopes=list(dict.fromkeys(scopes)))
            case ListTokens():
                found = await sup._read(tokens.read_tokens)
                for t in found:
                    t["created_at"] = db.iso(t["created_at"])
                return ok(req.id, tokens=found)
            case RevokeToken(name=name):
                await sup._write(tokens.revoke, sup.store.conn, name)
                return ok(req.id, revoked=True)
            case GetAccess(token=None):
                return ok(req.id, name=None, scopes=[], tokens=await sup._read(tokens.count))
            case GetAccess(token=str(token)):
                who = await sup._read(tokens.identify, token)
                count = await sup._read(tokens.count)
                return ok(req.id, name=who.name, scopes=who.scopes, tokens=count)
            case ApprovalLinks(key=key):
                approvers, deadline_at, created_at = await sup._read(_link_fields, key)
                return ok(req.id, links=self.links(key, approvers, deadline_at, created_at))
            case OpenLink(token=token):
                claims = signed.verify(self.secret, token, sup.clock.now_ms())
                approval = await sup._read(read_approval, claims.key)
                return ok(
                    req.id, key=claims.key, approver=claims.approver,
                    expires_at=db.iso(claims.expires_at), approval=approval,
                )  # fmt: skip
            case Watch():
                return await self.watch(req)
        raise InvalidRequest(f"op {req!r} is not an HTTP surface op")  # pragma: no cover

    async def watch(self, req: Watch) -> bytes:
        """Reply once the object's fingerprint differs from the caller's (at once when it
        has none), else after the timeout with `changed: false`.

        The waiter is registered before each read, so a change committed between the
        read and the wait still wakes it (no lost wake-up)."""
        if (req.run_id is None) == (req.key is None):
            raise InvalidRequest("watch takes exactly one of run_id and key")
        sup = self.sup
        limit = min(req.timeout if req.timeout is not None else MAX_WATCH, MAX_WATCH)
        deadline = trio.current_time() + limit
        field = "run" if req.run_id is not None else "approval"
        while True:
            event = trio.Event()
            self._register(req, event)
            try:
                obj = await (
                    sup._read(db.read_run, req.run_id)
                    if req.run_id is not None
                    else sup._read(read_approval, req.key)
                )
                now = fingerprint(obj)
                if now != req.fingerprint:
                    return ok(req.id, changed=True, fingerprint=now, **{field: obj})
                with trio.move_on_at(deadline):
                    await event.wait()
                if not event.is_set():
                    return ok(req.id, changed=False, fingerprint=now, **{field: obj})
            finally:
                self._unregister(req, event)

    def _register(self, req: Watch, event: trio.Event) -> None:
        if req.run_id is None:
            self._approval_watchers.add(event)
        else:  # the supervisor's run watchers: `run_changed` wakes them
            self.sup._watchers.setdefault(req.run_id, set()).add(event)

    def _unregister(self, req: Watch, event: trio.Event) -> None:
        if req.run_id is None:
            self._approval_watchers.discard(event)
            return
        watchers = self.sup._watchers.get(req.run_id)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self.sup._watchers[req.run_id]
