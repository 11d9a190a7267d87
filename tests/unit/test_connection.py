"""takod.connection.Connection's two writers, over a real socket pair.

takod's writer thread writes a worker's acknowledgements straight to the socket
(`send_threadsafe`) while trio's write loop writes everything else (`send`).
Whatever the interleaving, the peer must read the bytes in the order they were
sent, whole: a direct write never overtakes bytes already queued or in flight.

The peer's end is a plain blocking socket the test reads when it chooses, so the
socket buffer fills up exactly when a test wants it full.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from tako.takod.connection import Connection

BIG = bytes(range(256)) * 4096  # 1 MiB, far more than the socket buffer holds


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[Connection, socket.socket]]:
    """A Connection with its write loop running, and the peer's blocking socket."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn = Connection(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), max_line=1 << 20)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.write_loop)
            yield conn, peer
            nursery.cancel_scope.cancel()
    finally:
        peer.close()
        ours.close()


def read_exactly(peer: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = peer.recv(min(1 << 16, n - len(out)))
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


async def received(peer: socket.socket, n: int) -> bytes:
    """Read `n` bytes in a thread while trio's write loop goes on writing."""
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(read_exactly, peer, n)


async def test_writes_from_a_thread_and_from_trio_arrive_in_the_order_sent() -> None:
    async with pair() as (conn, peer):
        expected = b""
        for n in range(50):
            threaded, looped = f"thread {n}\n".encode(), f"trio {n}\n".encode()
            await trio.to_thread.run_sync(conn.send_threadsafe, threaded)
            conn.send(looped)
            if n % 7 == 0:
                await trio.testing.wait_all_tasks_blocked()  # let the write loop drain
            expected += threaded + looped
        assert await received(peer, len(expected)) == expected


async def test_a_direct_write_waits_behind_the_write_loop_in_flight() -> None:
    async with pair() as (conn, peer):
        conn.send(BIG)
        await trio.testing.wait_all_tasks_blocked()  # the write loop is stuck: buffer full
        head = peer.recv(1 << 16)  # now there is room, but the write loop has not run
        conn.send_threadsafe(b"ack\n")  # the writer thread's call, made before trio wakes
        conn.send(b"reply\n")
        rest = await received(peer, len(BIG) - len(head) + len(b"ack\nreply\n"))
    assert head + rest == BIG + b"ack\nreply\n"


async def test_the_rest_of_a_partial_direct_write_is_queued_and_later_writes_follow_it() -> None:
    async with pair() as (conn, peer):
        # the socket takes part of BIG at once; the rest is queued for the write loop
        conn.send_threadsafe(BIG)  # the writer thread's call, made before trio wakes
        assert 0 < conn.backlog < len(BIG)
        head = peer.recv(1 << 16)  # room again, before the write loop runs
        conn.send_threadsafe(b"first\n")  # must not overtake the queued rest of BIG
        conn.send(b"second\n")
        await trio.to_thread.run_sync(conn.send_threadsafe, b"third\n")
        rest = await received(peer, len(BIG) - len(head) + len(b"first\nsecond\nthird\n"))
    assert head + rest == BIG + b"first\nsecond\nthird\n"
