"""The socket protocol as any client sees it: raw lines over a real unix socket."""

from __future__ import annotations

import json
import os
import stat

import pytest
import trio

from tests.conftest import App, running


@pytest.fixture
def runtime() -> str:
    return "asyncio"


class Raw:
    """A bare NDJSON connection: send lines, read replies."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> dict[str, object]:
        while b"\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]


async def connect(app: App) -> Raw:
    return Raw(await trio.open_unix_socket(str(app.socket)))


async def test_errors_are_answered_and_the_connection_stays_usable(app: App) -> None:
    app.write("w.py", "from tako import workflow\n\n@workflow\nasync def w(p, s):\n    return p\n")
    async with running(app):
        conn = await connect(app)
        other = await connect(app)
        await conn.send(b"{not json\n")
        assert (await conn.reply())["error"]["code"] == "bad_json"  # type: ignore[index]
        await conn.send(b'{"id": 7, "op": "launch"}\n')
        reply = await conn.reply()
        assert (reply["id"], reply["error"]["code"]) == (7, "unknown_op")  # type: ignore[index]
        await conn.send(b'{"id": 8, "op": "start", "workflow": 12}\n')
        reply = await conn.reply()
        assert reply["error"]["code"] == "invalid"  # type: ignore[index]
        assert "$.workflow" in reply["error"]["message"]  # type: ignore[index]
        await conn.send(b'{"id": 9, "op": "get_run", "run_id": "nope"}\n')
        assert (await conn.reply())["error"]["code"] == "not_found"  # type: ignore[index]
        await conn.send(
            b'{"id": "s", "op": "step", "run_id": "r", "token": 1, "key": "k", "name": "k"}\n'
        )
        reply = await conn.reply()
        assert reply["error"]["code"] == "invalid"  # type: ignore[index]
        assert "worker" in reply["error"]["message"]  # type: ignore[index]
        # a line over the 4 MiB limit is refused and discarded; the next line is served
        await conn.send(b'{"id": 1, "op": "status", "pad": "' + b"x" * (5 << 20) + b'"}\n')
        assert (await conn.reply())["error"]["code"] == "too_large"  # type: ignore[index]
        await conn.send(b'{"id": 10, "op": "status"}\n')
        reply = await conn.reply()
        assert (reply["id"], reply["ok"], reply["supervisor"]) == (10, True, "running")
        await other.send(b'{"id": 1, "op": "workflows"}\n')
        assert (await other.reply())["ok"] is True


async def test_pipelined_requests_are_answered_by_id(app: App) -> None:
    app.write("w.py", "from tako import workflow\n\n@workflow\nasync def w(p, s):\n    return p\n")
    async with running(app):
        conn = await connect(app)
        lines = b"".join(
            json.dumps({"id": f"r{n}", "op": "start", "workflow": "w", "payload": n}).encode()
            + b"\n"
            for n in range(20)
        )
        await conn.send(lines)
        replies = [await conn.reply() for _ in range(20)]
        assert sorted(r["id"] for r in replies) == sorted(f"r{n}" for n in range(20))  # type: ignore[type-var]
        assert all(r["ok"] for r in replies)


async def test_socket_is_private(app: App) -> None:
    app.write("w.py", "from tako import workflow\n\n@workflow\nasync def w(p, s):\n    return p\n")
    async with running(app):
        assert stat.S_IMODE(os.stat(app.socket).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(app.data_dir).st_mode) == 0o700


async def test_a_client_that_shuts_its_writing_side_gets_every_reply(app: App) -> None:
    """`printf ... | socat`: the requests are read, then EOF; each must still be answered."""
    app.write("w.py", "from tako import workflow\n\n@workflow\nasync def w(p, s):\n    return p\n")
    async with running(app):
        conn = await connect(app)
        lines = b"".join(
            json.dumps({"id": n, "op": op, "workflow": "w", "payload": n}).encode() + b"\n"
            for n, op in enumerate(["start", "start", "start", "status"])
        )
        await conn.send(lines)
        await conn.stream.send_eof()
        replies = [await conn.reply() for _ in range(4)]
        assert sorted(r["id"] for r in replies) == [0, 1, 2, 3]  # type: ignore[type-var]
        assert all(r["ok"] for r in replies), replies
        assert await conn.stream.receive_some(1) == b""  # then the supervisor hangs up
        runs = await app.client().list_runs()
        assert len(runs) == 3


async def test_wait_with_timeout_zero_answers_a_finished_run(app: App) -> None:
    app.write("w.py", "from tako import workflow\n\n@workflow\nasync def w(p, s):\n    return p\n")
    async with running(app):
        run_id = await app.client().start("w", 5)
        assert (await app.client().result(run_id, timeout=15)) == 5
        conn = await connect(app)
        await conn.send(
            json.dumps({"id": 1, "op": "wait", "run_id": run_id, "timeout": 0}).encode()
        )
        await conn.send(b"\n")
        reply = await conn.reply()
        assert (reply["finished"], reply["run"]["result"]) == (True, 5)  # type: ignore[index]
