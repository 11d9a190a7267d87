"""The operations behind the HTTP surface: tokens, signed approval links, live changes.

The HTTP app is a client of takod like any other; everything it needs from
the store is one of these socket operations. Tokens live in runs.db (see
the tokens table) and are read on every `access`, so creating or revoking one takes
effect at once. Links are signed with a key that survives restarts: the
`[http] secret_env` variable, else a random key takod writes once to
`<data_dir>/http.secret` (mode 0600). `watch` answers when a run or an
approval changes, woken by the supervisor, never by polling.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import msgspec
import trio

from tako._errors import InvalidRequest
from tako._paths import DEFAULT_LISTEN
from tako._protocol import (
    ApprovalLinks,
    CreateToken,
    GetAccess,
    ListTokens,
    OpenLink,
    RevokeToken,
    Watch,
)
from tako._records import ApprovalView, RunView, iso
from tako._replies import (
    AccessReply,
    LinkReply,
    LinksReply,
    NewTokenReply,
    Reply,
    RevokedReply,
    TokensReply,
    WatchApprovalReply,
    WatchRunReply,
)
from tako.takod import links as signed
from tako.takod.changes import Changes
from tako.takod.config import HttpSettings
from tako.takod.scheduler import Clock
from tako.takod.storage.interface import Backend

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


class Access:
    """Answers the HTTP surface's operations for one supervisor (see `op`)."""

    def __init__(
        self,
        backend: Backend,
        *,
        settings: HttpSettings,
        data_dir: Path,
        clock: Clock,
        changes: Changes,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.data_dir = data_dir
        self.clock = clock
        self.changes = changes
        self.configured_url = settings.public_url
        self.public_url = settings.public_url or f"http://{settings.listen or DEFAULT_LISTEN}"
        self._secret: bytes | None = None
        self._secret_lock = threading.Lock()  # first used by the committer's thread or ours

    def served_at(self, url: str) -> None:
        """The HTTP server is bound at `url`: links point there unless `[http] public_url`
        says otherwise."""
        if self.configured_url is None:
            self.public_url = url

    @property
    def secret(self) -> bytes:
        with self._secret_lock:
            if self._secret is None:
                self._secret = load_secret(self.data_dir, self.settings.secret_env)
            return self._secret

    def links(
        self, key: str, approvers: list[str] | None, deadline_at: int | None, created_at: int
    ) -> dict[str, dict[str, str]]:
        return signed.links_for(
            self.secret, self.public_url, key, approvers, deadline_at, created_at
        )

    async def op(self, req: HttpOp) -> Reply:
        backend = self.backend
        match req:
            case CreateToken(name=name, scopes=scopes):
                now = self.clock.now_ms()
                token = await backend.write(lambda tx: tx.create_token(name, scopes, now))
                return NewTokenReply(
                    id=req.id, name=name, token=token, scopes=list(dict.fromkeys(scopes))
                )
            case ListTokens():
                return TokensReply(id=req.id, tokens=await backend.read(lambda r: r.tokens()))
            case RevokeToken(name=name):
                await backend.write(lambda tx: tx.revoke_token(name))
                return RevokedReply(id=req.id, revoked=True)
            case GetAccess(token=None):
                count = await backend.read(lambda r: r.token_count())
                return AccessReply(id=req.id, name=None, scopes=[], tokens=count)
            case GetAccess(token=str(token)):
                who = await backend.read(lambda r: r.identify(token))
                count = await backend.read(lambda r: r.token_count())
                return AccessReply(id=req.id, name=who.name, scopes=who.scopes, tokens=count)
            case ApprovalLinks(key=key):
                fields = await backend.read(lambda r: r.link_fields(key))
                return LinksReply(id=req.id, links=self.links(key, *fields))
            case OpenLink(token=token):
                claims = signed.verify(self.secret, token, self.clock.now_ms())
                approval = await backend.read(lambda r: r.approval(claims.key))
                return LinkReply(
                    id=req.id, key=claims.key, approver=claims.approver,
                    expires_at=iso(claims.expires_at) or "", approval=approval,
                )  # fmt: skip
            case Watch():
                return await self.watch(req)
        raise InvalidRequest(f"op {req!r} is not an HTTP surface op")  # pragma: no cover

    async def watch(self, req: Watch) -> Reply:
        """Reply once the object's fingerprint differs from the caller's (at once when it
        has none), else after the timeout with `changed: false`.

        The waiter is registered before each read, so a change committed between the
        read and the wait still wakes it (no lost wake-up)."""
        if (req.run_id is None) == (req.key is None):
            raise InvalidRequest("watch takes exactly one of run_id and key")
        limit = min(req.timeout if req.timeout is not None else MAX_WATCH, MAX_WATCH)
        deadline = trio.current_time() + limit
        run_id, key = req.run_id, req.key
        while True:
            event = trio.Event()
            self.changes.watch(run_id, event)
            try:
                obj: Any = await (
                    self.backend.read(lambda r: r.run(run_id))
                    if run_id is not None
                    else self.backend.read(lambda r: r.approval(key or ""))
                )
                now = fingerprint(obj)
                if now != req.fingerprint:
                    return watched(req.id, True, now, obj)
                with trio.move_on_at(deadline):
                    await event.wait()
                if not event.is_set():
                    return watched(req.id, False, now, obj)
            finally:
                self.changes.unwatch(run_id, event)


def watched(req_id: Any, changed: bool, fingerprint: str, obj: RunView | ApprovalView) -> Reply:
    if isinstance(obj, RunView):
        return WatchRunReply(id=req_id, changed=changed, fingerprint=fingerprint, run=obj)
    return WatchApprovalReply(id=req_id, changed=changed, fingerprint=fingerprint, approval=obj)
