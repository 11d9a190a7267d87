"""Who is calling, and what they may do.

A caller is known by one of, in order: the app's own `authenticate(request)`
hook (a mounted app's login), a bearer token (`Authorization: Bearer ...`,
or the `tako_token` cookie the pages set), or nothing. With nothing, the
call is allowed only while the app has no token at all and the caller is on
this machine (loopback): local development needs no setup, and the moment a
token exists every caller needs one.

Token checks go to takod (`access`), which keeps only hashes. The answer is
kept for at most a second per token, so a revoked token stops working within
a second without a round trip per request; when it is due again, concurrent
requests with that token share one round trip rather than each asking.
"""

from __future__ import annotations

import inspect
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from starlette.requests import HTTPConnection

from tako._errors import Forbidden, TakoError, Unauthorized
from tako._protocol import GetAccess
from tako._replies import AccessReply
from tako.http._link import TakodLink

SCOPES = ("read", "start", "signal", "decide", "admin")
CACHE_SECONDS = 1.0
TOKEN_COOKIE = "tako_token"

Authenticate = Callable[[HTTPConnection], "str | Awaitable[str | None] | None"]


@dataclass(frozen=True)
class Actor:
    """The caller: `name` is the actor recorded with its decisions."""

    name: str
    scopes: frozenset[str]
    how: str  # "token", "login" (the app's authenticate hook), "local" (no credentials)

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"{self.name} may not do this: it needs the {scope!r} scope")

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes


LOCAL = Actor(name="local", scopes=frozenset(SCOPES), how="local")


class Access:
    def __init__(self, link: TakodLink, authenticate: Authenticate | None = None) -> None:
        self.link = link
        self.authenticate = authenticate
        self._cache: dict[str | None, tuple[float, Actor | None, int]] = {}
        self._asking: dict[str | None, anyio.Event] = {}  # tokens being looked up now

    async def actor(self, conn: HTTPConnection) -> Actor:
        """The caller of this request, or Unauthorized."""
        if self.authenticate is not None:
            found = self.authenticate(conn)
            name = await found if inspect.isawaitable(found) else found
            if name:
                return Actor(name=str(name), scopes=frozenset(SCOPES) - {"admin"}, how="login")
        token = bearer(conn)
        actor, tokens = await self._check(token)
        if actor is not None:
            return actor
        if tokens == 0 and is_loopback(conn):
            return LOCAL
        if tokens == 0:
            raise Unauthorized(
                "no credentials: this app has no token yet, and calls without one are only "
                "taken from this machine; create one with `tako tokens create NAME --scope ...`"
            )
        raise Unauthorized("no credentials: send `Authorization: Bearer <token>`")

    async def _check(self, token: str | None) -> tuple[Actor | None, int]:
        known = self._fresh(token)
        asking = self._asking.get(token)
        if known is None and asking is not None:
            await asking.wait()  # another request is asking takod about this token
            known = self._fresh(token)
        if known is not None:
            return known
        done = self._asking[token] = anyio.Event()
        try:
            return await self._ask(token)
        finally:
            done.set()
            if self._asking.get(token) is done:
                del self._asking[token]

    def _fresh(self, token: str | None) -> tuple[Actor | None, int] | None:
        cached = self._cache.get(token)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        return None

    async def _ask(self, token: str | None) -> tuple[Actor | None, int]:
        now = time.monotonic()
        try:
            reply = await self.link.call(GetAccess(token=token), AccessReply)
        except TakoError as exc:
            if exc.code == "unauthorized":
                raise Unauthorized("that token matches none of this app's tokens") from None
            raise
        actor = None
        if reply.name:
            actor = Actor(name=reply.name, scopes=frozenset(reply.scopes), how="token")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now, actor, reply.tokens)
        return actor, reply.tokens


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.cookies.get(TOKEN_COOKIE) or None


def is_loopback(conn: HTTPConnection) -> bool:
    host = conn.client.host if conn.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")
