"""`python -m bench.http_placement [--rounds 3] [--n 6000]`: where should the HTTP app run?

When this was written, `tako dev` served `tako.http.app()` with Hypercorn's trio
worker on takod's own event loop, so every HTTP request cost takod's trio thread
its parsing and writing as well as the start itself. The app reaches takod only
through its unix socket, so it can as well run in processes of its own under any
ASGI server; since these figures (docs/performance.md), `tako dev` does so, with
one uvicorn process, and the `tako dev` row measures that (its CPU column then
counts takod alone, not the HTTP process). This measures starts/s (`POST
/api/runs`, bench scenario 9's request) from the same 16 closed-loop keep-alive
clients (`bench/loadgen.py`) for:

- `tako dev`: takod with the HTTP app as `tako dev` serves it (`python -m tako.takod --http`);
- Hypercorn's uvloop worker and uvicorn (uvloop + httptools), each with 1 and 2
  worker processes, in front of a takod without HTTP (`python -m tako.takod`, as
  `tako dev --no-http`), the app built by `asgi_app()` below;
- `socket`: the same start as a socket request line from 16 clients, the ceiling.

Each configuration gets a fresh takod (durability FULL, runs delayed an hour so
no worker competes), a warm-up, then one bounded load; configurations take turns
in an order that reverses from round to round. CPU seconds per start are read
from /proc (takod; the HTTP server's processes) and from the reaped load generator.
uvicorn is not a dependency of tako: `pip install 'uvicorn[standard]'` to include it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine import BenchError, Takod, settings, takod, takod_http, wait_until
from bench.scenarios import CLIENTS, START, TAKO_SH_HTTP, _load

SOCKET_ENV = "TAKO_BENCH_SOCKET"
TICK = os.sysconf("SC_CLK_TCK")


def asgi_app() -> Any:
    """The factory the external servers load: the app, on the socket named in the env."""
    import tako.http

    return tako.http.app(socket=os.environ[SOCKET_ENV])


def _hypercorn(workers: int, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "hypercorn", "-k", "uvloop", "-w", str(workers)),
        *("-b", f"127.0.0.1:{port}", "--keep-alive", "75", "--graceful-timeout", "1"),
        "bench.http_placement:asgi_app()",
    ]


def _uvicorn(workers: int, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "uvicorn", "--factory", "bench.http_placement:asgi_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        *("--loop", "uvloop", "--http", "httptools", "--timeout-keep-alive", "75"),
        *("--no-access-log", "--log-level", "warning"),
    ]


SERVERS = {
    "hypercorn-uvloop x1": lambda port: _hypercorn(1, port),
    "hypercorn-uvloop x2": lambda port: _hypercorn(2, port),
    "uvicorn x1": lambda port: _uvicorn(1, port),
    "uvicorn x2": lambda port: _uvicorn(2, port),
}
IN_PROCESS = "as tako dev serves it"
SOCKET = "socket, 16 clients"


@dataclass
class Sample:
    starts_per_s: float
    takod_us: float  # CPU µs per start in takod's process (with its HTTP server, in-process)
    server_us: float  # CPU µs per start in the HTTP server's own processes
    loadgen_us: float


def _cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these live processes, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _tree(root: int) -> list[int]:
    """`root` and its live descendants, from /proc's parent links."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = (Path("/proc") / entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(") ", 1)[1].split()[1])
    tree = [root]
    for pid in tree:  # grows while it is walked: breadth first
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise BenchError(f"the HTTP server exited with {proc.returncode}")
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def _measure(t: Takod, spec: dict[str, Any], n: int, seconds: float, server: list[int]) -> Sample:
    common = {"clients": CLIENTS, "seconds": seconds}
    _load({**common, **spec, "n": 400})  # warm-up: code paths, connections, pools
    before = (_cpu([t.pid]), _cpu(server), resource.getrusage(resource.RUSAGE_CHILDREN))
    done, took = _load({**common, **spec, "n": n})
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    loadgen = kids.ru_utime + kids.ru_stime - before[2].ru_utime - before[2].ru_stime
    per = 1e6 / done
    takod_us = (_cpu([t.pid]) - before[0]) * per
    return Sample(done / took, takod_us, (_cpu(server) - before[1]) * per, loadgen * per)


def _http_spec(url: str) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return {"kind": "http", "host": host, "port": int(port), "path": "/api/runs", "body": START}


def run_one(name: str, n: int, seconds: float, durability: str) -> Sample:
    """One configuration against a fresh takod."""
    if name == IN_PROCESS:
        with takod_http(**settings(durability)) as t:
            return _measure(t, _http_spec(t.url), n, seconds, [])
    with takod(**settings(durability)) as t:
        if name == SOCKET:
            spec = {"kind": "socket", "socket": str(t.socket), "body": {"op": "start", **START}}
            return _measure(t, spec, n, seconds, [])
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, SOCKET_ENV: str(t.socket)}
        log = open(t.root / "server.log", "wb")  # noqa: SIM115 (closed below, after the server)
        proc = subprocess.Popen(SERVERS[name](port), env=env, stdout=log, stderr=log)
        try:
            wait_until(lambda: _healthy(url, proc), timeout=30, poll=0.1, what=f"{name} to serve")
            return _measure(t, _http_spec(url), n, seconds, _tree(proc.pid))
        finally:
            pids = _tree(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in pids[1:]:  # its workers exit with it; make sure (our grandchildren)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_placement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=6000, help="starts per measurement")
    parser.add_argument("--seconds", type=float, default=60, help="wall-time cap per measurement")
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args(argv)
    names = [IN_PROCESS, *SERVERS, SOCKET]
    for server in ("uvicorn", "hypercorn"):
        if importlib.util.find_spec(server) is None:
            print(f"{server} not installed (pip install {server}): skipping it")
            names = [x for x in names if not x.startswith(server)]
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            s = run_one(name, args.n, args.seconds, args.durability)
            samples[name].append(s)
            print(f"round {r + 1} {name:22} {s.starts_per_s:8,.0f} starts/s", flush=True)
    print(
        "\n| where the HTTP app runs | starts/s, median (range) | / in-process, same round "
        "| / 5,689 | CPU µs per start: takod, HTTP server, load generator |"
    )
    print("|---|---|---|---|---|")
    summary: dict[str, dict[str, float]] = {}
    for name, ss in samples.items():
        rate = statistics.median(s.starts_per_s for s in ss)
        lo, hi = min(s.starts_per_s for s in ss), max(s.starts_per_s for s in ss)
        cpu = [statistics.median(getattr(s, f) for s in ss) for f in Sample.__annotations__][1:]
        summary[name] = {"starts_per_s": rate, "takod_us": cpu[0], "server_us": cpu[1]}
        ratio = statistics.median(
            s.starts_per_s / b.starts_per_s for s, b in zip(ss, samples[IN_PROCESS], strict=True)
        )
        summary[name]["vs_in_process"] = ratio
        print(
            f"| {name} | {rate:,.0f} ({lo:,.0f}-{hi:,.0f}) | {ratio:.2f}x "
            f"| {rate / TAKO_SH_HTTP:.2f} | {cpu[0]:.0f}, {cpu[1]:.0f}, {cpu[2]:.0f} |"
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
