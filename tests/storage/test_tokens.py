"""API tokens through the storage seam: created once, stored so that only the token
itself identifies its holder, listed without it, revoked."""

from __future__ import annotations

import pytest

from tako._errors import NotAllowed, Unauthorized
from tako._records import iso
from tako._replies import TokenRow
from tako.takod.storage import Backend
from tako.takod.storage.interface import Identity, TokenNotFound
from tests.storage.kit import NOW


async def create(b: Backend, name: str, scopes: list[str], now: int = NOW) -> str:
    return await b.write(lambda tx: tx.create_token(name, scopes, now))


async def identify(b: Backend, token: str) -> Identity:
    return await b.read(lambda r: r.identify(token))


async def test_a_token_identifies_its_holder(backend: Backend) -> None:
    token = await create(backend, "ci", ["runs:read", "runs:write", "runs:read"])
    assert token.startswith("tako_")
    assert len(token) > 40
    assert await identify(backend, token) == Identity("ci", ["runs:read", "runs:write"])
    other = await create(backend, "ops", ["approvals"])
    assert other != token
    assert await identify(backend, other) == Identity("ops", ["approvals"])
    with pytest.raises(Unauthorized):
        await identify(backend, token + "x")
    with pytest.raises(Unauthorized):
        await identify(backend, "")


async def test_tokens_are_listed_by_name_without_the_token(backend: Backend) -> None:
    assert await backend.read(lambda r: r.tokens()) == []
    assert await backend.read(lambda r: r.token_count()) == 0
    await create(backend, "zed", ["runs:read"], NOW)
    await create(backend, "ci", ["runs:write"], NOW + 1000)
    assert await backend.read(lambda r: r.tokens()) == [
        TokenRow(name="ci", scopes=["runs:write"], created_at=iso(NOW + 1000) or ""),
        TokenRow(name="zed", scopes=["runs:read"], created_at=iso(NOW) or ""),
    ]
    assert await backend.read(lambda r: r.token_count()) == 2


async def test_a_name_is_taken_until_revoked(backend: Backend) -> None:
    first = await create(backend, "ci", ["runs:read"])
    with pytest.raises(NotAllowed, match="already exists"):
        await create(backend, "ci", ["admin"])
    assert await identify(backend, first) == Identity("ci", ["runs:read"])  # unchanged
    await backend.write(lambda tx: tx.revoke_token("ci"))
    with pytest.raises(Unauthorized):
        await identify(backend, first)
    assert await backend.read(lambda r: r.token_count()) == 0
    second = await create(backend, "ci", ["admin"])
    assert await identify(backend, second) == Identity("ci", ["admin"])


async def test_revoking_an_unknown_token_is_not_found(backend: Backend) -> None:
    await create(backend, "ci", ["runs:read"])
    with pytest.raises(TokenNotFound):
        await backend.write(lambda tx: tx.revoke_token("nobody"))
    assert await backend.read(lambda r: r.token_count()) == 1
