"""A real takod for one scenario: its app, its process, and clients to load it.

takod runs as its own process (`python -m tako.takod`), as in production, so the
bench's client load does not share its interpreter, and its memory can be
read from /proc. Pipelined load is raw NDJSON over the unix socket; one-off
requests go through `tako.Client`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

import tako

# Every scenario's workflows. A step body that records `time.time_ns()` marks
# "the next step started"; bench compares it with its own clock (same machine).
WORKFLOWS = '''
import time

import anyio

from tako import workflow


async def _nop():
    return None


async def _now():
    return time.time_ns()


@workflow
async def steps(payload, step):
    """Scenario 1: wait for the shared event, then no-op steps; returns when the last
    checkpoint was acknowledged (i.e. committed)."""
    await step.wait_for(payload["go"])
    for i in range(payload["steps"]):
        await step.run(f"s{i}", _nop)
    return time.time_ns()


@workflow
async def sequential(payload, step):
    """Scenario 2: one run, many steps in a row; returns [first step began, last acked]."""
    await step.wait_for(payload["go"])
    began = time.time_ns()
    for i in range(payload["steps"]):
        await step.run(f"s{i}", _nop)
    return [began, time.time_ns()]


@workflow
async def resume(payload, step):
    """Scenarios 3-6: park on an event; the next step records when it began."""
    await step.wait_for(payload["event"])
    return await step.run("after", _now)


@workflow
async def timer(payload, step):
    """Scenario 7: sleep until an instant; the next step records when it began."""
    await step.sleep_until("until", payload["at"])
    return await step.run("after", _now)


@workflow
async def herd(payload, step):
    """Scenario 7: many runs sleeping until the same instant."""
    await step.sleep_until("until", payload["at"])
    return await step.run("after", _now)


@workflow
async def approve(payload, step):
    """Scenario 10: park on an approval request; the next step records when it began."""
    await step.approval("ok", summary="go?")
    return await step.run("after", _now)


# Scenario 11: what users write. No bench helpers, no tuning: the step bodies are
# plain lambdas (run in threads) or async def functions; the run returns when its
# last step was acknowledged, i.e. committed.


@workflow
async def checkout_sync(payload, step):
    await step.wait_for("go")
    order = payload["order"]
    await step.run("validate", lambda: {"order": order, "valid": True})
    price = await step.run("price", lambda: 4200 + order % 7)
    await step.run("reserve", lambda: {"sku": "A-1", "qty": 1})
    charge = await step.run("charge", lambda: {"id": f"ch_{order}", "amount": price})
    await step.run("invoice", lambda: f"inv_{charge['id']}")
    await step.run("label", lambda: f"lbl_{order}")
    await step.run("ship", lambda: {"carrier": "post", "order": order})
    await step.run("email", lambda: True)
    await step.run("points", lambda: price // 100)
    await step.run("close", lambda: "done")
    return time.time_ns()


@workflow
async def checkout_async(payload, step):
    await step.wait_for("go")
    order = payload["order"]

    async def validate():
        return {"order": order, "valid": True}

    async def price():
        return 4200 + order % 7

    async def reserve():
        return {"sku": "A-1", "qty": 1}

    async def charge():
        return {"id": f"ch_{order}", "amount": total}

    async def invoice():
        return f"inv_{paid['id']}"

    async def label():
        return f"lbl_{order}"

    async def ship():
        return {"carrier": "post", "order": order}

    async def email():
        return True

    async def points():
        return total // 100

    async def close():
        return "done"

    await step.run("validate", validate)
    total = await step.run("price", price)
    await step.run("reserve", reserve)
    paid = await step.run("charge", charge)
    await step.run("invoice", invoice)
    await step.run("label", label)
    await step.run("ship", ship)
    await step.run("email", email)
    await step.run("points", points)
    await step.run("close", close)
    return time.time_ns()


@workflow
async def hold(payload, step):
    """Scenario 8: stay in flight inside an async step."""

    async def block():
        await anyio.sleep(payload["seconds"])

    await step.run("block", block)
'''


class BenchError(Exception):
    """The harness could not take a measurement (not a slow engine: a broken one)."""


class Takod:
    """A temp app and a `python -m tako.takod` process serving it; with `http`, a
    `python -m tako.takod --http` process instead, which also serves the HTTP app (as
    `tako dev` does) on a free loopback port: its address is then `self.url`."""

    def __init__(self, root: Path, settings: dict[str, dict[str, Any]], http: bool = False) -> None:
        self.root = root
        self.http = http
        self.url = ""
        self.out = root / "takod.out"
        self.app = root / "app"
        self.data = root / "d"
        self.socket = self.data / "tako.sock"
        self.log = root / "takod.log"
        (self.app / "workflows").mkdir(parents=True)
        (self.app / "workflows" / "bench.py").write_text(textwrap.dedent(WORKFLOWS))
        lines = ['name = "bench"']
        for section, values in settings.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        (self.app / "tako.toml").write_text("\n".join(lines) + "\n")
        self.db = self.data / "apps" / "bench" / "runs.db"
        self.client = tako.Client(self.socket)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        module = ["tako.takod", "--http", "127.0.0.1:0"] if self.http else ["tako.takod"]
        argv = [sys.executable, "-m", *module, str(self.app), "--data-dir", str(self.data)]
        with open(self.log, "ab") as log, open(self.out, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=log)
        wait_until(self._up, timeout=30, what="takod to accept connections", takod=self)
        if self.http:
            wait_until(self._http_up, timeout=30, what="the HTTP server", takod=self)

    def _http_up(self) -> bool:
        for line in self.out.read_text().splitlines():
            if line.startswith("http "):
                self.url = line.split()[1]
                return True
        return False

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"takod exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            self.client.status()
            return True
        except tako.SupervisorUnavailable:
            return False

    def stop(self) -> None:
        self.client.close()
        workers = self.worker_pids()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in workers:  # its workers exit with it; make sure (they are our grandchildren)
            if pid in self.worker_pids():
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        return self.client.status()

    def count(self, status: str) -> int:
        return int(self.status()["runs"].get(status, 0))

    def worker_pids(self) -> list[int]:
        """Worker processes of this app, read from the OS process table."""
        pids = []
        needle = str(self.app).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = (Path("/proc") / entry / "cmdline").read_bytes().split(b"\0")
                state = (Path("/proc") / entry / "stat").read_text().rsplit(") ", 1)[-1][:1]
            except OSError:
                continue
            if b"tako.worker_runtime" in argv and needle in argv and state != "Z":
                pids.append(int(entry))
        return pids

    def wait_for_count(self, status: str, n: int, timeout: float, poll: float = 0.02) -> None:
        wait_until(
            lambda: self.count(status) >= n,
            timeout=timeout,
            poll=poll,
            what=f"{n} runs {status}",
            takod=self,
        )

    def results(self, workflow: str) -> list[Any]:
        """Results of the finished runs of `workflow`, read from runs.db read-only (as the
        CLI's read commands do); list_runs stops at 10,000."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT result FROM runs WHERE workflow = ? AND status = 'completed'", (workflow,)
            ).fetchall()
        return [msgspec.json.decode(r[0]) for r in rows]


@contextmanager
def takod(**settings: dict[str, Any]) -> Iterator[Takod]:
    """A takod for one measurement, in a temp dir short enough for a unix socket path."""
    with _served(settings, http=False) as server:
        yield server


@contextmanager
def takod_http(**settings: dict[str, Any]) -> Iterator[Takod]:
    """The same, also serving the HTTP app on a free loopback port (`Takod.url`)."""
    with _served(settings, http=True) as server:
        yield server


@contextmanager
def _served(settings: dict[str, dict[str, Any]], http: bool) -> Iterator[Takod]:
    root = Path(tempfile.mkdtemp(prefix="tkb", dir="/tmp"))
    server = Takod(root, settings, http)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def settings(
    durability: str,
    *,
    concurrency: int = 100,
    idle_timeout: str = "60s",
) -> dict[str, dict[str, Any]]:
    return {
        "workers": {
            "concurrency": concurrency,
            "idle_timeout": idle_timeout,
            "shutdown_grace": "1s",
        },
        "storage": {"durability": durability},
    }


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def wait_until(
    check: Callable[[], object],
    *,
    timeout: float,
    what: str,
    poll: float = 0.02,
    takod: Takod | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = f"\ntakod log:\n{takod.log_tail()}" if takod is not None else ""
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}{tail}")
        time.sleep(poll)


def pipelined(path: Path, batches: list[list[dict[str, Any]]]) -> tuple[float, list[Any]]:
    """Send each batch of requests on a connection of its own without waiting for
    replies; return the seconds from the first write to the last reply, and the replies."""
    return pipelined_to([(path, batch) for batch in batches])


def pipelined_to(targets: list[tuple[Path, list[dict[str, Any]]]]) -> tuple[float, list[Any]]:
    """`pipelined`, each (socket, requests) on a connection of its own: several
    supervisors' sockets at once.

    One thread per connection writes while the calling thread reads, so neither side's
    socket buffer can stall the other."""
    encode = msgspec.json.Encoder().encode
    blobs = [
        b"".join(encode({"id": i, **req}) + b"\n" for i, req in enumerate(b)) for _, b in targets
    ]
    socks = []
    for path, _ in targets:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        socks.append(sock)
    replies: list[list[Any]] = [[] for _ in targets]
    readers = [
        threading.Thread(target=_read_replies, args=(s, len(b), replies[i]))
        for i, (s, (_, b)) in enumerate(zip(socks, targets, strict=True))
    ]
    start = time.perf_counter()
    for t in readers:
        t.start()
    for sock, blob in zip(socks, blobs, strict=True):
        threading.Thread(target=sock.sendall, args=(blob,), daemon=True).start()
    for t in readers:
        t.join()
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    flat = [r for rs in replies for r in rs]
    failed = [r for r in flat if not r.get("ok")]
    if failed or len(flat) != sum(len(b) for _, b in targets):
        first = failed[0] if failed else "replies missing"
        raise BenchError(f"{len(failed)} of {len(flat)} pipelined requests failed: {first}")
    return elapsed, flat


def _read_replies(sock: socket.socket, n: int, out: list[Any]) -> None:
    decoder = msgspec.json.Decoder()
    buf = b""
    while len(out) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        out.extend(decoder.decode(line) for line in lines if line)


def start_requests(
    workflow: str, payloads: list[Any], delay: float | None = None
) -> list[dict[str, Any]]:
    extra = {} if delay is None else {"delay": delay}
    return [{"op": "start", "workflow": workflow, "payload": p, **extra} for p in payloads]


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")
