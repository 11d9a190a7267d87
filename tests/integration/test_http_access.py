"""The HTTP app's credential check against a real takod: answers kept a second, shared."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from starlette.requests import HTTPConnection

from tako._errors import Unauthorized
from tako._protocol import ClientRequest, op_name
from tako._replies import ReplyT
from tako.http._access import LOCAL, Access
from tako.http._link import TakodLink
from tests.conftest import App, running

CLIENTS = 16


@pytest.fixture
def runtime() -> str:
    return "asyncio"


class CountingLink(TakodLink):
    """The real link, counting the requests it sends."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ops: list[str] = []

    async def call(self, request: ClientRequest, reply: type[ReplyT]) -> ReplyT:
        self.ops.append(op_name(request))
        return await super().call(request, reply)


def local_call() -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": [], "client": ("127.0.0.1", 50000)})


async def test_concurrent_requests_share_one_access_round_trip(app: App) -> None:
    app.write("empty.py", "")
    async with running(app):
        link = CountingLink(app.socket)
        access = Access(link)
        actors: list[object] = []

        async def call() -> None:
            actors.append(await access.actor(local_call()))

        async with trio.open_nursery() as nursery:
            for _ in range(CLIENTS):
                nursery.start_soon(call)
        assert actors == [LOCAL] * CLIENTS
        assert link.ops == ["access"]  # one asked takod; the others waited for its answer
        await access.actor(local_call())
        assert link.ops == ["access"]  # and, within the second, nobody asks again
        await link.aclose()


async def test_concurrent_requests_with_a_wrong_token_are_each_refused(app: App) -> None:
    app.write("empty.py", "")
    async with running(app):
        await app.client().create_token("ci", ["read"])
        access = Access(TakodLink(app.socket))
        call = HTTPConnection(
            {
                "type": "http",
                "headers": [(b"authorization", b"Bearer tako_wrong")],
                "client": ("127.0.0.1", 50000),
            }
        )
        refused: list[str] = []

        async def attempt() -> None:
            with pytest.raises(Unauthorized) as info:
                await access.actor(call)
            refused.append(info.value.message)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    nursery.start_soon(attempt)
        assert refused == ["that token matches none of this app's tokens"] * CLIENTS
        await access.link.aclose()
