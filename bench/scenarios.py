"""The scenarios. Each takes the run's settings and returns its figures.

Times that mark "the next step started" are `time.time_ns()` taken inside a
step body (or the handler, right after a checkpoint was acknowledged) in the
worker; bench compares them with its own clock on the same machine.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.baseline import checkpoint_ceiling, sqlite_commits_per_second
from bench.engine import (
    BenchError,
    Takod,
    pipelined,
    rss_mb,
    settings,
    split,
    start_requests,
    takod,
    takod_http,
    wait_until,
)
from bench.loadgen import HttpConn, http_request

Figures = dict[str, float | str]  # a str is a note shown under the table


@dataclass
class Ctx:
    quick: bool
    durability: str
    parked: int  # scenario 6: how many parked runs to create
    budget: float  # scenario 6: seconds allowed for creating them
    log: Callable[[str], None] = print
    sizes: dict[str, Any] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- 1. steps/s ------------------------------------------------------------------------


def throughput(ctx: Ctx) -> Figures:
    """Runs parked on one shared event; one signal; time until every run's last step is
    committed (the handler returns time.time_ns() right after that acknowledgement)."""
    out: Figures = {}
    shapes = {"": (200, 10), "_large": (1000, 20)}
    if ctx.quick:
        shapes = {"": (20, 5), "_large": (50, 5)}
    for suffix, (runs, steps) in shapes.items():
        with takod(**settings(ctx.durability, concurrency=max(runs, 100))) as t:
            payloads = [{"go": "go", "steps": steps}] * runs
            pipelined(t.socket, [start_requests("steps", payloads)])
            t.wait_for_count("waiting", runs, timeout=60)
            began = time.time_ns()
            t.client.signal("go")
            t.wait_for_count("completed", runs, timeout=120, poll=0.05)
            ends = [int(x) for x in t.results("steps")]
            out[f"steps_per_s{suffix}"] = runs * steps / ((max(ends) - began) / 1e9)
    ceiling = checkpoint_ceiling(0.25 if ctx.quick else 1.0, ctx.durability)
    out["checkpoint_ceiling_1"] = ceiling
    out["steps_vs_ceiling"] = float(out["steps_per_s_large"]) / ceiling
    return out


# -- 11. the headline: what users write, as shipped ------------------------------------------


def headline(ctx: Ctx) -> Figures:
    """An app with no tako.toml tuning at all: 1,000 runs started through tako.Client,
    each parked in `step.wait_for("go")`; one `signal("go")` wakes them all; then 10
    steps each, sync lambdas in one takod and async def functions in another. Timed as
    scenario 1: from the signal to the last run's last acknowledged (committed) step.
    Then the same sync workflow under the best tuning `python -m bench.defaults` found
    (TUNED), and the ceiling of one writer thread committing nothing but checkpoints."""
    runs, steps = ctx.size(1000, 20), 10
    out: Figures = {}
    variants = [("sync", "sync", {}), ("async", "async", {}), ("tuned", "sync", TUNED)]
    for name, body, tuning in variants:
        workflow = f"checkout-{body}"
        with takod(**tuning) as t:  # no tuning: tako.toml holds only the app's name
            for i in range(runs):
                t.client.start(workflow, {"order": i})
            t.wait_for_count("waiting", runs, timeout=120, poll=0.05)
            began = time.time_ns()
            t.client.signal("go")
            t.wait_for_count("completed", runs, timeout=600, poll=0.05)
            ends = [int(x) for x in t.results(workflow)]
            out[f"headline_{name}_steps_per_s"] = runs * steps / ((max(ends) - began) / 1e9)
    sync, tuned = float(out["headline_sync_steps_per_s"]), float(out["headline_tuned_steps_per_s"])
    out["headline_sync_vs_async"] = sync / float(out["headline_async_steps_per_s"])
    out["headline_default_vs_tuned"] = sync / tuned
    ceiling = checkpoint_ceiling(0.25 if ctx.quick else 1.0, ctx.durability)
    out["checkpoint_ceiling"] = ceiling
    out["headline_tuned_vs_ceiling"] = tuned / ceiling
    return out


# The best tuning of the headline's sync workflow on a 2-core machine, from the grid of
# `python -m bench.defaults`: two workers sharing the 1,000 runs.
TUNED: dict[str, dict[str, Any]] = {"workers": {"concurrency": 500, "max_workers": 2}}


# -- 2. one run, sequential steps ---------------------------------------------------------


def sequential(ctx: Ctx) -> Figures:
    """One run, many steps in a row: the round trip worker -> takod -> commit -> worker."""
    out: Figures = {}
    steps = ctx.size(1000, 100)
    for mode in ("full", "normal"):
        with takod(**settings(mode)) as t:
            rid = t.client.start("sequential", {"go": "go", "steps": steps})
            t.wait_for_count("waiting", 1, timeout=30)
            t.client.signal("go")
            began, ended = t.client.result(rid, timeout=120)
            out[f"ms_per_step_{mode}"] = (ended - began) / 1e6 / steps
    return out


# -- 3. pipelined starts ------------------------------------------------------------------


def starts(ctx: Ctx) -> Figures:
    """Starts written back to back on 4 connections; each reply means committed. The runs
    are delayed an hour so no worker competes for the CPU. Then starts one at a time from
    one `tako.Client`, held against what one costs at least: a round trip on the same
    connection (`workflows`, answered from memory) plus one raw commit."""
    n = ctx.size(10_000, 400)
    with takod(**settings(ctx.durability)) as t:
        pipelined(t.socket, [start_requests("resume", [{"event": "warm"}] * 100, delay=3600)])
        reqs = start_requests("resume", [{"event": f"x{i}"} for i in range(n)], delay=3600)
        elapsed, _ = pipelined(t.socket, split(reqs, 4))
        one, trip = [], []
        for i in range(ctx.size(1000, 50)):
            began = time.perf_counter()
            t.client.start("resume", {"event": f"s{i}"}, delay=3600)
            one.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            t.client.workflows()
            trip.append((time.perf_counter() - began) * 1000)
    commit_ms = 1000 / sqlite_commits_per_second(0.25 if ctx.quick else 1.0, ctx.durability)
    start_ms, trip_ms = statistics.median(one), statistics.median(trip)
    return {
        "starts_per_s": n / elapsed,
        "sequential_start_p50_ms": start_ms,
        "round_trip_p50_ms": trip_ms,
        "sequential_start_vs_floor": start_ms / (trip_ms + commit_ms),
    }


# -- 4. signal -> resume, warm worker ------------------------------------------------------


def park_all(t: Takod, prefix: str, n: int, timeout: float = 120) -> list[str]:
    """Start n `resume` runs with ids prefix0.. waiting on events prefix0..; wait for them."""
    ids = [f"{prefix}{i}" for i in range(n)]
    reqs = [
        {"op": "start", "workflow": "resume", "payload": {"event": rid}, "run_id": rid}
        for rid in ids
    ]
    pipelined(t.socket, split(reqs, 4))
    t.wait_for_count("waiting", n, timeout=timeout, poll=0.05)
    return ids


def resume_once(t: Takod, rid: str) -> tuple[float, float]:
    """Signal the run waiting on event `rid`; return (ms until its next step began,
    ms until the signal's reply)."""
    sent = time.time_ns()
    t.client.signal(rid)
    replied = time.time_ns()
    began = int(t.client.result(rid, timeout=30))
    return (began - sent) / 1e6, (replied - sent) / 1e6


def warm_resume(ctx: Ctx) -> Figures:
    samples, warmup = ctx.size(200, 10), 10
    with takod(**settings(ctx.durability, concurrency=1000)) as t:
        ids = park_all(t, "w", samples + warmup)
        results = [resume_once(t, rid) for rid in ids]
    lat = [r[0] for r in results[warmup:]]
    replies = [r[1] for r in results[warmup:]]
    return {
        "warm_resume_p50_ms": statistics.median(lat),
        "warm_resume_p99_ms": percentile(lat, 99),
        "signal_reply_p50_ms": statistics.median(replies),
    }


# -- 5. resume from zero ----------------------------------------------------------------


def _wall_ms(argv: list[str], repeat: int) -> float:
    """Median wall-clock ms of running argv to completion."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


# What `python -m tako.worker_runtime` imports before it can say hello, then the app it loads;
# timed inside a fresh interpreter, so process noise does not blur the split.
_WORKER_START = """
import time
began = time.perf_counter()
import argparse, msgspec, worker_runtime.main
imported = time.perf_counter()
from pathlib import Path
from tako.worker_runtime.loader import load_app
load_app(Path({app!r}))
print((imported - began) * 1000, (time.perf_counter() - imported) * 1000)
"""


def _worker_start_ms(app: str, repeat: int) -> tuple[float, float]:
    """Median ms of (worker_runtime imports, loading the app) in fresh interpreters."""
    samples = []
    for _ in range(repeat):
        argv = [sys.executable, "-c", _WORKER_START.format(app=app)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
        samples.append((float(out[0]), float(out[1])))
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def _top_imports(code: str, n: int = 8, tries: int = 3) -> str:
    """The costliest imports `code` triggers (modules at depth 0 and 1, ours left out),
    from `python -X importtime`: the quickest of a few tries, the least disturbed."""
    best: list[tuple[int, str]] = []
    for _ in range(tries):
        argv = [sys.executable, "-X", "importtime", "-c", code]
        found = []
        for line in subprocess.run(argv, capture_output=True, text=True).stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
            if m and len(m.group(2)) <= 2 and not m.group(3).startswith("tako.worker_runtime"):
                found.append((int(m.group(1)), m.group(3)))
        if not best or sum(us for us, _ in found) < sum(us for us, _ in best):
            best = found
    best.sort(reverse=True)
    return ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in best[:n])


def cold_resume(ctx: Ctx) -> Figures:
    samples = ctx.size(15, 2)
    with takod(**settings(ctx.durability, idle_timeout="0.2s")) as t:
        ids = park_all(t, "z", samples)
        lat = []
        for rid in ids:
            wait_until(
                lambda: t.status()["workers"] == 0 and not t.worker_pids(),
                timeout=30,
                what="no worker alive",
                takod=t,
            )
            lat.append(resume_once(t, rid)[0])
        repeat = ctx.size(9, 3)
        spawn = _wall_ms([sys.executable, "-c", "pass"], repeat)
        imports, app_load = _worker_start_ms(str(t.app), repeat)
        top = _top_imports("import argparse, msgspec, worker_runtime.main")
    total = statistics.median(lat)
    return {
        "cold_resume_p50_ms": total,
        "cold_spawn_ms": spawn,
        "cold_imports_ms": imports,
        "cold_app_load_ms": app_load,
        "cold_rest_ms": total - spawn - imports - app_load,
        "note_cold": (
            "cold-resume breakdown, each part timed apart from the real worker (median of "
            f"{repeat} runs): spawn = wall time of `python -c pass` (interpreter and site); "
            "imports = what `python -m tako.worker_runtime` imports, and app load = load_app() of "
            "the bench app, both timed inside a fresh interpreter; rest (event loop start, "
            "connect, hello, claim, assign, replay, the signal's own commit) = the measured "
            f"p50 minus those three, by difference. Costliest imports: {top}"
        ),
    }


# -- 6. a million parked runs ---------------------------------------------------------------


def _db_bytes(t: Takod) -> int:
    """Logical size of runs.db (pages in use, WAL included), read-only."""
    with sqlite3.connect(f"file:{t.db}?mode=ro", uri=True) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def create_parked(
    t: Takod, request: Callable[[int], dict[str, Any]], n: int, budget: float, status: str
) -> tuple[int, float]:
    """Create runs through the engine (pipelined starts; each run is then assigned,
    parks, and is committed parked) in chunks, keeping the unparked backlog bounded.
    Stops early once `budget` seconds are spent. Returns (runs parked, seconds)."""
    chunk, backlog = 10_000, 20_000
    before = t.count(status)
    began, sent = time.perf_counter(), 0
    while sent < n and time.perf_counter() - began < budget:
        k = min(chunk, n - sent)
        reqs = [{"op": "start", **request(i)} for i in range(sent, sent + k)]
        pipelined(t.socket, split(reqs, 4))
        sent += k
        t.wait_for_count(status, before + sent - backlog, timeout=600, poll=0.5)
    t.wait_for_count(status, before + sent, timeout=600, poll=0.1)
    return sent, time.perf_counter() - began


def _waiter(i: int) -> dict[str, Any]:
    return {"workflow": "resume", "payload": {"event": f"p{i}"}, "run_id": f"p{i}"}


def parked(ctx: Ctx) -> Figures:
    n = ctx.parked
    samples = ctx.size(100, 10)
    with takod(**settings(ctx.durability, concurrency=1000, idle_timeout="2s")) as t:
        empty = _db_bytes(t)
        made, seconds = create_parked(t, _waiter, n, ctx.budget, "waiting")
        wait_until(lambda: t.status()["workers"] == 0, timeout=60, what="workers to exit")
        out: Figures = {
            "parked_runs": made,
            "park_rate": made / seconds,
            "takod_rss_mb": rss_mb(t.pid),
            "workers_parked": t.status()["workers"] + len(t.worker_pids()),
            "bytes_per_parked_run": (_db_bytes(t) - empty) / made,
        }
        resume_once(t, "p0")  # a cold start; what follows has a warm worker
        step = max(1, made // samples)
        lat = [resume_once(t, f"p{i}")[0] for i in range(1, made, step)][:samples]
        out["parked_resume_p50_ms"] = statistics.median(lat)
    if made < n:
        out["note_parked"] = (
            f"created {made:,} of {n:,} parked runs through the engine in the "
            f"{ctx.budget:.0f} s budget ({made / seconds:,.0f} runs/s: start, assign, park, "
            f"each committed); {n:,} would take ~{n / (made / seconds) / 60:.0f} min at that "
            "rate. RSS and bytes per run are measured at the count reached; no row was "
            "inserted behind the engine's back."
        )
    return out


# -- 7. timers ------------------------------------------------------------------------------


def timers(ctx: Ctx) -> Figures:
    lone = ctx.size(200, 5)
    n = ctx.size(100_000, 2_000)
    with takod(**settings(ctx.durability, concurrency=1000)) as t:
        late = []
        for _ in range(lone + 1):
            due = _now_ms() + 50
            rid = t.client.start("timer", {"at": (due + 0.5) / 1000})  # rounds to `due` ms
            late.append(int(t.client.result(rid, timeout=30)) / 1e6 - due)
        late = late[1:]  # the first one started the worker
        # The herd: pick an instant far enough ahead that all n runs are parked before it,
        # from the rate of a pilot batch (which parks an hour out, out of the way).
        pilot = max(500, n // 50)
        far = time.time() + 3600
        made, seconds = create_parked(
            t, lambda i: {"workflow": "timer", "payload": {"at": far}}, pilot, math.inf, "sleeping"
        )
        rate = made / seconds
        instant = time.time() + n / rate * 2 + 5
        herd = {"workflow": "herd", "payload": {"at": instant}}
        create_parked(t, lambda i: herd, n, math.inf, "sleeping")
        margin = instant - time.time()
        if margin < 0:
            raise BenchError(f"creating {n} sleepers overran their wake-up by {-margin:.1f} s")
        t.wait_for_count("completed", lone + 1 + n, timeout=margin + 120, poll=0.2)
        woke = sorted(int(x) / 1e9 - instant for x in t.results("herd"))
    return {
        "timer_late_p50_ms": statistics.median(late),
        "timer_late_p99_ms": percentile(late, 99),
        "herd_all_resumed_s": woke[-1],
        "herd_p50_s": statistics.median(woke),
        "note_herd": f"{n:,} runs slept until one instant; the last resumed "
        f"{woke[-1]:.2f} s after it (created at {rate:,.0f} runs/s)",
    }


# -- 8. a full worker -----------------------------------------------------------------------


def full_worker(ctx: Ctx) -> Figures:
    n = ctx.size(1000, 100)
    with takod(**settings(ctx.durability, concurrency=1000)) as t:
        t.client.result(t.client.start("hold", {"seconds": 0}), timeout=30)
        (pid,) = t.worker_pids()
        idle = rss_mb(pid)
        pipelined(t.socket, split(start_requests("hold", [{"seconds": 300}] * n), 4))
        t.wait_for_count("running", n, timeout=60)
        time.sleep(1)  # every handler is inside its step by now
        busy = rss_mb(pid)
    return {
        "worker_rss_mb": busy,
        "worker_idle_rss_mb": idle,
        "worker_kib_per_run": (busy - idle) * 1024 / n,
    }


# -- 9. starts over HTTP, next to starts over the socket ----------------------------------

CLIENTS = 16
TAKO_SH_HTTP = 5_689  # enqueues/s tako.sh publishes over HTTP (its Rust server, 2 vCPU)
START = {"workflow": "resume", "payload": {"event": "x"}, "delay": 3600}


def _load(spec: dict[str, Any]) -> tuple[int, float]:
    """Run bench/loadgen.py in a process of its own; (requests answered, seconds)."""
    argv = [sys.executable, "-m", "bench.loadgen", json.dumps(spec)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=spec["seconds"] + 60)
    if proc.returncode != 0:
        raise BenchError(f"load generator failed: {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["failed"]:
        raise BenchError(f"a request failed: {out['failed']}")
    return int(out["done"]), float(out["seconds"])


def http_starts(ctx: Ctx) -> Figures:
    """Starts from 16 closed-loop clients, one request in flight each: `POST /api/runs`
    over HTTP/1.1 keep-alive, and the same start as one socket request line, against
    one takod that serves both (as `tako dev` does). The two take turns, A B B A,
    so that drift hurts them alike; then pipelined starts (scenario 3's path) on the
    same takod. Runs are delayed an hour so no worker competes for the CPU."""
    n, seconds = ctx.size(4000, 200), ctx.size(60, 20)
    with takod_http(**settings(ctx.durability)) as t:
        host, port = t.url.removeprefix("http://").rsplit(":", 1)
        http: dict[str, Any] = {
            "kind": "http",
            "host": host,
            "port": int(port),
            "path": "/api/runs",
        }
        sock: dict[str, Any] = {"kind": "socket", "socket": str(t.socket)}
        common: dict[str, Any] = {"clients": CLIENTS, "seconds": seconds}
        http["body"] = START
        sock["body"] = {"op": "start", **START}
        totals = {"http": [0, 0.0], "socket": [0, 0.0]}
        for spec in (http, sock):  # warm-up: the code paths, the first connections
            _load({**common, **spec, "n": ctx.size(200, 32)})
        for kind in ("http", "socket", "socket", "http"):
            spec = http if kind == "http" else sock
            done, took = _load({**common, **spec, "n": n // 2})
            totals[kind][0] += done
            totals[kind][1] += took
        reqs = start_requests("resume", [{"event": f"x{i}"} for i in range(n)], delay=3600)
        elapsed, _ = pipelined(t.socket, split(reqs, 4))
    over_http = totals["http"][0] / totals["http"][1]
    over_socket = totals["socket"][0] / totals["socket"][1]
    return {
        "http_starts_per_s": over_http,
        "socket16_starts_per_s": over_socket,
        "pipelined_starts_per_s": n / elapsed,
        "http_vs_socket": over_http / over_socket,
        "http_vs_tako_sh": over_http / TAKO_SH_HTTP,
    }


# -- 10. approve click -> next step, warm worker ---------------------------------------------


def approve_resume(ctx: Ctx) -> Figures:
    """Runs parked on `step.approval("ok")`; each is approved in turn over HTTP
    (`POST /api/approvals/{key}/decision` `{"action": "approve", "by": ...}` as the
    JSON API's client sends it, on a keep-alive connection) or over the socket (the
    `approve` request, as `tako approvals approve` sends it), alternating; the time
    until the next step's body began (it returns `time.time_ns()`), as scenario 4
    times signal -> next step."""
    samples, warmup = ctx.size(200, 10), 10
    with takod_http(**settings(ctx.durability, concurrency=1000)) as t:
        ids = [f"a{i}" for i in range(2 * (samples + warmup))]
        reqs = [{"op": "start", "workflow": "approve", "payload": None, "run_id": r} for r in ids]
        pipelined(t.socket, split(reqs, 4))
        t.wait_for_count("waiting", len(ids), timeout=120, poll=0.05)
        host, port = t.url.removeprefix("http://").rsplit(":", 1)
        conn = HttpConn(host, int(port))
        body = json.dumps({"action": "approve", "by": "bench"}).encode()
        lat: dict[str, list[float]] = {"http": [], "socket": []}
        replies: dict[str, list[float]] = {"http": [], "socket": []}
        for i, rid in enumerate(ids):
            kind = "http" if i % 2 == 0 else "socket"
            path = f"/api/approvals/{rid}:ok/decision"
            sent = time.time_ns()
            if kind == "http":
                status, reply = conn.exchange(http_request(host, int(port), path, body))
                if status != 200:
                    raise BenchError(f"the decision was refused: {status} {reply[:300]!r}")
            else:
                t.client.approve(f"{rid}:ok", by="bench")
            replied = time.time_ns()
            began = int(t.client.result(rid, timeout=30))
            lat[kind].append((began - sent) / 1e6)
            replies[kind].append((replied - sent) / 1e6)
        conn.sock.close()
    http, sock = lat["http"][warmup:], lat["socket"][warmup:]
    return {
        "approve_resume_p50_ms": statistics.median(http),
        "approve_resume_p99_ms": percentile(http, 99),
        "approve_reply_p50_ms": statistics.median(replies["http"][warmup:]),
        "approve_socket_p50_ms": statistics.median(sock),
        "approve_socket_p99_ms": percentile(sock, 99),
    }
