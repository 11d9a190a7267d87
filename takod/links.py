"""Signed approval links: who may decide which request, until when, with no lookup.

A link's token is `base64url(claims) + "." + base64url(mac)`, where claims is
the JSON `{"k": key, "a": approver, "e": expiry_ms}` and mac is the first
16 bytes of HMAC-SHA256(secret, first part). Nothing is stored: the MAC alone
proves tako wrote the claims. Verifying tells a tampered link (bad shape or
bad MAC) from an expired one, and it says "expired" only once the MAC checks
out, so a forged link can never pass for an old genuine one.

Pure functions: the secret and the time are passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any, NamedTuple

from tako._errors import LinkExpired, LinkTampered

MAC_BYTES = 16
DEFAULT_LIFETIME_MS = 30 * 86400 * 1000  # a request with no deadline: links last 30 days
ANYONE = "*"  # the approver of a link to a request that anyone may decide
ACTIONS = ("approve", "reject")


class Claims(NamedTuple):
    key: str
    approver: str
    expires_at: int  # ms since the epoch


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, body.encode(), hashlib.sha256).digest()[:MAC_BYTES]


def sign(secret: bytes, key: str, approver: str, expires_at: int) -> str:
    """The token of a link that lets `approver` decide `key` until `expires_at` (ms)."""
    claims = json.dumps({"k": key, "a": approver, "e": expires_at}, separators=(",", ":"))
    body = _b64(claims.encode())
    return f"{body}.{_b64(_mac(secret, body))}"


def verify(secret: bytes, token: str, now: int) -> Claims:
    """The claims of a genuine, unexpired token; LinkTampered or LinkExpired otherwise."""
    body, dot, mac_text = token.partition(".")
    tampered = LinkTampered("this approval link is not valid: it was altered or cut short")
    try:
        mac = _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise tampered from None
    if not dot or not hmac.compare_digest(mac, _mac(secret, body)):
        raise tampered
    try:
        raw: Any = json.loads(_unb64(body))
        claims = Claims(str(raw["k"]), str(raw["a"]), int(raw["e"]))
    except (binascii.Error, ValueError, TypeError, KeyError):  # signed by us, yet unreadable
        raise tampered from None
    if now >= claims.expires_at:
        raise LinkExpired(f"this approval link for {claims.key} has expired")
    return claims


def expiry(deadline_at: int | None, created_at: int) -> int:
    """A link lasts until the request's deadline, else 30 days after it was asked."""
    return deadline_at if deadline_at is not None else created_at + DEFAULT_LIFETIME_MS


def urls(public_url: str, token: str) -> dict[str, str]:
    """The view link and the two that preselect an action (still pages: they decide nothing)."""
    view = f"{public_url.rstrip('/')}/a/{token}"
    return {"view": view, **{action: f"{view}?action={action}" for action in ACTIONS}}


def links_for(
    secret: bytes,
    public_url: str,
    key: str,
    approvers: list[str] | None,
    deadline_at: int | None,
    created_at: int,
) -> dict[str, dict[str, str]]:
    """One set of links per approver, or a single `"*"` set when anyone may decide."""
    until = expiry(deadline_at, created_at)
    names = [ANYONE] if approvers is None else approvers
    return {name: urls(public_url, sign(secret, key, name, until)) for name in names}
