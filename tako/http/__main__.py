"""`python -m tako.http --fd N --socket PATH`: the HTTP app in a process of its own.

`tako dev` (and `python -m tako.takod --http`) bind the listening socket and
start this process on it: uvicorn with uvloop and httptools serves the app,
which reaches takod through its unix socket like any client. Out of takod's
process, an HTTP request costs takod what a socket request costs (about
120 µs of its event loop instead of 670 µs in-process under Hypercorn), so
starts over HTTP run about 3x faster on 2 cores (docs/performance.md).

The process exits when its standard input closes: takod holds the other end,
so even a `kill -9` of takod leaves no HTTP server behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
import threading


def _exit_with_parent() -> None:
    """Block on stdin, which only takod writes to; EOF means it is gone."""
    try:
        while sys.stdin.buffer.read(1 << 10):
            pass
    finally:
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tako.http")
    parser.add_argument("--fd", type=int, required=True, help="the bound listening socket")
    parser.add_argument("--socket", required=True, help="takod's unix socket")
    parser.add_argument("--title", default="tako")
    args = parser.parse_args(argv)
    threading.Thread(target=_exit_with_parent, daemon=True, name="parent-watch").start()

    import uvicorn

    from tako.http import app

    has = importlib.util.find_spec
    config = uvicorn.Config(
        app(socket=args.socket, title=args.title),
        loop="uvloop" if has("uvloop") else "asyncio",
        http="httptools" if has("httptools") else "h11",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        timeout_graceful_shutdown=1,
    )
    # A socket object of the fd's real family: uvicorn's own `fd=` takes every fd for a
    # unix socket, and its TCP connections would then go without TCP_NODELAY (a 40 ms
    # stall per response against delayed ACKs).
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=args.fd)])


if __name__ == "__main__":
    main()
