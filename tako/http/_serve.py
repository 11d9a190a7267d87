"""Serving the HTTP app for a supervisor (`tako dev`, `python -m tako.takod --http`).

takod binds the listening socket, so that when the default address is taken
(a second app, a second supervisor on this host) the next free port is used,
while an address the user gave explicitly that cannot be bound is an error.
The app itself runs in a process of its own (`python -m tako.http`, uvicorn)
on that socket, started and stopped from takod's nursery: served from
takod's own event loop, HTTP cost takod 5x more per request than the socket
protocol does, and starts over HTTP ran at a third of the speed
(docs/performance.md, "Where the HTTP server runs").
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import subprocess
import sys
from typing import Any

import trio

from tako._errors import TakoError
from tako._paths import DEFAULT_LISTEN
from tako._protocol import GetAccess
from tako._replies import AccessReply

PORTS_TRIED = 100  # from the default port up, when it is taken


class ListenError(TakoError):
    """The HTTP address cannot be listened on."""

    code = "listen"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8787` for IPv6) into its parts, or ListenError naming the problem."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ListenError(
            f"{text!r} is not an address to listen on: use HOST:PORT, like {DEFAULT_LISTEN}"
        )
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(listen: str, *, exact: bool) -> socket.socket:
    """A listening TCP socket on `listen`; when not `exact`, the next free port if taken."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in range(port, port + (1 if exact or port == 0 else PORTS_TRIED)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
            continue
        sock.listen(1024)
        sock.setblocking(False)
        return sock
    raise ListenError(f"cannot listen on {listen}: {last}") from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(
    sock: socket.socket,
    socket_path: Any,
    title: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the HTTP process (`python -m tako.http`) on the bound `sock` until cancelled,
    starting it again if it dies. Connections wait in the socket's backlog meanwhile."""
    fd = sock.fileno()
    argv = [
        sys.executable, "-P", "-m", "tako.http",
        "--fd", str(fd), "--socket", str(socket_path), "--title", title,
    ]  # fmt: skip
    log = logging.getLogger("tako.http")
    while True:
        proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, pass_fds=(fd,))
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        try:
            code = await proc.wait()
        finally:
            with trio.CancelScope(shield=True):
                await _stop(proc)
        log.error("the HTTP server (pid %d) exited with %s; starting it again", proc.pid, code)
        await trio.sleep(1.0)


async def _stop(proc: trio.Process) -> None:
    """SIGTERM (uvicorn closes its connections within a second), then SIGKILL."""
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(3):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.stdin is not None:
        await proc.stdin.aclose()


async def host(nursery: trio.Nursery, supervisor: Any, listen: str | None) -> str:
    """Serve the HTTP app for `supervisor` in `nursery`; the URL it serves.

    `listen` None means the default address, or the next free port when it is taken.
    A non-loopback address is refused while the app has no token: without one, every
    call from the network would be allowed to start runs and decide approvals."""
    from tako.http._link import TakodLink

    sock = bind(listen or DEFAULT_LISTEN, exact=listen is not None)
    try:
        host_name = parse_listen(listen or DEFAULT_LISTEN)[0]
        if not is_loopback_host(host_name):
            link = TakodLink(supervisor.socket_path)
            tokens = (await link.call(GetAccess(), AccessReply)).tokens
            await link.aclose()
            if not tokens:
                raise ListenError(
                    f"refusing to serve HTTP on {listen}: this app has no token, so anyone "
                    "who can reach that address could start runs and decide approvals. "
                    "Create one first (`tako tokens create NAME --scope read --scope decide`), "
                    "or listen on 127.0.0.1"
                )
    except BaseException:
        sock.close()
        raise
    url = url_of(sock)
    await nursery.start(serve, sock, supervisor.socket_path, supervisor.config.name)
    supervisor.access.served_at(url)  # links point here, unless [http] public_url says
    return url
