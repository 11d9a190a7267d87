"""`python -m bench.loadgen SPEC_JSON`: closed-loop clients, in a process of their own.

Each of `clients` threads holds one connection (HTTP/1.1 keep-alive over TCP, or
takod's unix socket) and sends one request, reads its whole reply, sends the next:
one request in flight per client, as a service calling tako would. The clients are
raw sockets writing a request encoded once up front and reading replies with a
minimal parser (Content-Length for HTTP, a newline for the socket), rather than
httpx: a lighter client measures the server, not the client. They run in this
process, apart from takod's, so they share neither its CPU accounting nor its GIL.

Every loop is bounded: `n` requests in all, and `seconds` of wall time. Prints one
JSON line: {"done", "seconds" (first send to last reply), "failed" (first failure),
"reconnects"}.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HttpConn:
    """One keep-alive connection; reconnects when the server says `Connection: close`
    (Hypercorn does after 1,000 requests on a connection), as HTTP clients do."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.reconnects = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; its status and body."""
        self.sock.sendall(request)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = self.buf[:end].decode("latin-1").split("\r\n")
        length, close = 0, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                close = value.strip().lower() == "close"
        while len(self.buf) < end + 4 + length:
            self._fill()
        body = self.buf[end + 4 : end + 4 + length]
        self.buf = self.buf[end + 4 + length :]
        if close:
            self.sock.close()
            self.reconnects += 1
            self._connect()
        return int(head[0].split()[1]), body

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk


class UnixConn:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request line; 200 with its reply line, or 500 when it is not ok."""
        self.sock.sendall(request)
        while (nl := self.buf.find(b"\n")) < 0:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("takod closed the connection")
            self.buf += chunk
        line, self.buf = self.buf[:nl], self.buf[nl + 1 :]
        return (200 if b'"ok":true' in line else 500), line


def run(spec: dict[str, Any]) -> dict[str, Any]:
    clients, n, seconds = int(spec["clients"]), int(spec["n"]), float(spec["seconds"])
    conns: list[HttpConn | UnixConn]
    if spec["kind"] == "http":
        host, port = spec["host"], int(spec["port"])
        request = http_request(host, port, spec["path"], json.dumps(spec["body"]).encode())
        conns = [HttpConn(host, port) for _ in range(clients)]
        ok = {200, 201}
    else:
        request = json.dumps({"id": 1, **spec["body"]}).encode() + b"\n"
        conns = [UnixConn(spec["socket"]) for _ in range(clients)]
        ok = {200}
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    done = [0] * clients
    failed: list[str] = []
    gate = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn = conns[i]
        gate.wait()
        try:
            for _ in range(shares[i]):
                status, body = conn.exchange(request)
                if status not in ok:
                    failed.append(f"{status}: {body[:300]!r}")
                    return
                done[i] += 1
                if time.perf_counter() > deadline[0]:
                    return
        except OSError as exc:
            failed.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    gate.wait()
    for t in threads:
        t.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - began
    for conn in conns:
        conn.sock.close()
    reconnects = sum(c.reconnects for c in conns if isinstance(c, HttpConn))
    return {
        "done": sum(done),
        "seconds": elapsed,
        "failed": failed[0] if failed else None,
        "reconnects": reconnects,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
