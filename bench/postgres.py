"""`python -m bench.postgres` (also `python -m bench --only pg`): tako on PostgreSQL.

The same app served by 1, 2 and 4 supervisors (`python -m tako.takod APP --data-dir D`,
each a process of its own with its own data dir, socket and worker, default
settings but for `[storage] url`) on one database, next to DBOS Transact with its
system database on the same server, in one run. In every round each system takes
its turn (the order rotates), on a database dropped and created again, so that a
noisy neighbour hurts them alike; figures are medians over rounds, ratios medians
of the per-round ratios. Each round also measures the server's floor: single-row
INSERT commits/s on one connection.

Workloads (the client is this process, apart from takod's; requests are NDJSON
lines pipelined on 4 socket connections spread over the supervisors' sockets):

- steps: `runs` runs of `steps` no-op steps each, started and run to the end;
  from the first start sent to the last run's `finished_at`.
- starts: `starts` runs delayed an hour (no worker competes), pipelined.
- resume: runs started on supervisor B park in `wait_for`; each is signalled
  through supervisor A (`tako.Client.signal`) and the next step's body records
  when it began, and in which supervisor's worker (its parent pid). With one
  supervisor, A is B.

While a workload runs, bench/pgstats.py samples the database (commits/s, CPU of
the server's processes, of takod and its workers, of this process, busy backends
and their wait events, and with pg_stat_statements loaded, statements per step).

Writes bench/results/postgres.json and postgres.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.engine import BenchError, Takod, pipelined_to, wait_until
from bench.pgstats import Sampler, raw_commits
from bench.scenarios import percentile

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
TAKO_DB, DBOS_DB = "tako_bench", "dbos_bench"
SCHEMA = "tako_bench"  # the app "bench"'s schema
RESULTS = Path(__file__).parent / "results"
SUPERVISORS = (1, 2, 4)
DBOS_PUBLISHED = 43_000 / 96  # workflows/s per vCPU of the database (DBOS's blog, RDS 96 vCPU)

WORKFLOWS = '''
import os
import time

from tako import workflow


async def _nop():
    return None


async def _where():
    return [time.time_ns(), os.getppid()]


@workflow
async def work(payload, step):
    """No-op steps; returns when the last one was acknowledged, and where it ran."""
    for i in range(payload["steps"]):
        await step.run(f"s{i}", _nop)
    return [time.time_ns(), os.getppid()]


@workflow
async def resume(payload, step):
    """Park on an event; the next step records when it began, and where."""
    await step.wait_for(payload["event"])
    return await step.run("after", _where)
'''


def db_url(server: str, db: str) -> str:
    return f"{server.rstrip('/')}/{db}"


def reachable(server: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(db_url(server, "postgres"), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def fresh_database(server: str, db: str) -> str:
    """Drop and create `db` (so that every turn starts from the same empty database)."""
    with psycopg.connect(db_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    return db_url(server, db)


# -- the supervisors --------------------------------------------------------------------


class Fleet:
    """`n` supervisors of the app `bench` on one database, each in a temp dir of its own
    (its app copy, data dir and socket); only `[storage] url` is set."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url
        self.roots = [Path(tempfile.mkdtemp(prefix="tkp", dir="/tmp")) for _ in range(n)]
        self.sups = [Takod(root, {"storage": {"url": url}}) for root in self.roots]
        for sup in self.sups:
            (sup.app / "workflows" / "bench.py").write_text(WORKFLOWS)

    def start(self) -> None:
        self.sups[0].start()  # the first one migrates the schema
        rest = [threading.Thread(target=s.start) for s in self.sups[1:]]
        for t in rest:
            t.start()
        for t in rest:
            t.join()
        for sup in self.sups:
            if sup.proc is None or sup.proc.poll() is not None:
                raise BenchError(f"a supervisor did not start: {sup.log_tail()}")

    def stop(self) -> None:
        for sup in self.sups:
            sup.stop()
        for root in self.roots:
            shutil.rmtree(root, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.sups]

    def where(self, pid: int) -> int:
        """Which supervisor a worker's parent pid is (-1: none of them)."""
        return self.pids.index(pid) if pid in self.pids else -1


@contextmanager
def fleet(url: str, n: int) -> Iterator[Fleet]:
    f = Fleet(url, n)
    try:
        f.start()
        yield f
    finally:
        f.stop()


def pipelined(targets: list[tuple[Path, list[dict[str, Any]]]]) -> float:
    """Each (socket, requests) on a connection of its own, written back to back while
    a thread reads the replies; seconds from the first write to the last reply."""
    elapsed, _replies = pipelined_to(targets)
    return elapsed


def spread(f: Fleet, reqs: list[dict[str, Any]], conns: int = 4) -> list[tuple[Path, Any]]:
    """The requests on `conns` connections, the connections round-robin over the sockets."""
    return [(f.sups[i % len(f.sups)].socket, reqs[i::conns]) for i in range(conns)]


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


# -- tako's workloads -------------------------------------------------------------------


def tako_steps(f: Fleet, dbname: str, runs: int, steps: int) -> dict[str, float]:
    """Runs started spread over the supervisors, after a warm-up that leaves every
    supervisor with a worker (the default idle_timeout is 3 s)."""
    reqs = [{"op": "start", "workflow": "work", "payload": {"steps": steps}}] * runs
    warm = [{"op": "start", "workflow": "resume", "payload": {"event": "warm"}}] * 8
    with psycopg.connect(f.url, autocommit=True) as conn:
        pipelined(spread(f, warm))
        parked = f"SELECT count(*) FROM {SCHEMA}.runs WHERE status = 'waiting'"
        wait_until(lambda: count(conn, parked) >= len(warm), timeout=60, what="warm-up")
        done = (
            f"SELECT count(*) FROM {SCHEMA}.runs WHERE workflow = 'work' AND status = 'completed'"
        )
        with Sampler(f.url, dbname, f.pids) as sampler:
            began_ms = time.time_ns() / 1e6
            pipelined(spread(f, reqs))
            wait_until(lambda: count(conn, done) >= runs, timeout=600, poll=0.02, what="runs")
        rows = conn.execute(
            f"SELECT finished_at, result FROM {SCHEMA}.runs WHERE workflow = 'work'"
        ).fetchall()
    seconds = (max(int(r[0]) for r in rows) - began_ms) / 1000
    where = Counter(f.where(json.loads(bytes(r[1]))[1]) for r in rows)
    out = {"steps_per_s": runs * steps / seconds, "runs_per_s": runs / seconds}
    out |= {f"steps {k}": v for k, v in sampler.out.items()}
    out["commits_per_step"] = sampler.out["commits"] / (runs * steps)
    if "statements" in sampler.out:
        out["statements_per_step"] = sampler.out["statements"] / (runs * steps)
        out["top"] = sampler.top  # type: ignore[assignment]
    out["least_runs_share"] = min(where.get(i, 0) for i in range(len(f.sups))) / runs
    return out


def tako_starts(f: Fleet, dbname: str, n: int) -> dict[str, float]:
    reqs = [{"op": "start", "workflow": "resume", "payload": {"event": "never"}, "delay": 3600}]
    with Sampler(f.url, dbname, f.pids) as sampler:
        seconds = pipelined(spread(f, reqs * n))
    out = {"starts_per_s": n / seconds, "commits_per_start": sampler.out["commits"] / n}
    return out | {f"starts {k}": v for k, v in sampler.out.items() if k != "statements"}


def tako_resume(f: Fleet, samples: int, warmup: int = 10) -> dict[str, float]:
    a, b = f.sups[0], f.sups[min(1, len(f.sups) - 1)]
    ids = [f"r{i}" for i in range(samples + warmup)]
    reqs = [
        {"op": "start", "workflow": "resume", "payload": {"event": rid}, "run_id": rid}
        for rid in ids
    ]
    pipelined([(b.socket, reqs)])
    with psycopg.connect(f.url, autocommit=True) as conn:
        waiting = f"SELECT count(*) FROM {SCHEMA}.runs WHERE id LIKE 'r%' AND status = 'waiting'"
        wait_until(lambda: count(conn, waiting) >= len(ids), timeout=60, what="runs parked")
    lat, replies, resumed_on = [], [], Counter[int]()
    for rid in ids:
        sent = time.time_ns()
        a.client.signal(rid)
        replied = time.time_ns()
        began, ppid = b.client.result(rid, timeout=30)
        lat.append((int(began) - sent) / 1e6)
        replies.append((replied - sent) / 1e6)
        resumed_on[f.where(int(ppid))] += 1
    lat, replies = lat[warmup:], replies[warmup:]
    return {
        "resume_p50_ms": statistics.median(lat),
        "resume_p99_ms": percentile(lat, 99),
        "signal_reply_p50_ms": statistics.median(replies),
        "resumed_on_a": resumed_on[0] / len(ids),
    }


def tako_turn(server: str, n: int, size: dict[str, int]) -> dict[str, Any]:
    url = fresh_database(server, TAKO_DB)
    with fleet(url, n) as f:
        out: dict[str, Any] = tako_steps(f, TAKO_DB, size["runs"], size["steps"])
        out |= tako_starts(f, TAKO_DB, size["starts"])
        out |= tako_resume(f, size["samples"])
    return out


# -- DBOS -------------------------------------------------------------------------------


def dbos_job(server: str, workload: str, args: dict[str, Any]) -> dict[str, Any]:
    """One DBOS workload in a process of its own (bench/peers_dbos.py), on a fresh system
    database; sampled from the moment DBOS has launched."""
    url = fresh_database(server, DBOS_DB)
    spec = json.dumps({"url": url, "handshake": True, **args})
    argv = [sys.executable, "-m", "bench.peers_dbos", workload, spec]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise BenchError(f"DBOS {workload} did not launch")
        with Sampler(url, DBOS_DB, [proc.pid]) as sampler:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        proc.stdin.write("bye\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0 or not line.strip():
        raise BenchError(f"DBOS {workload} failed ({proc.returncode})")
    out: dict[str, Any] = json.loads(line)
    return out | {f"{workload} {k}": v for k, v in sampler.out.items() if k != "statements"}


def dbos_turn(server: str, size: dict[str, int]) -> dict[str, Any]:
    """The same workloads, keyed as tako's."""
    runs, steps = size["runs"], size["steps"]
    out = dbos_job(server, "started_and_done", {"runs": runs, "steps": steps})
    out |= dbos_job(server, "starts", {"n": size["dbos_starts"]})
    out |= dbos_job(server, "warm_resume", {"samples": size["samples"]})
    out = {k.replace("started_and_done ", "steps ").replace("warm_", ""): v for k, v in out.items()}
    out["commits_per_step"] = out["steps commits"] / (runs * steps)
    out["commits_per_start"] = out["starts commits"] / size["dbos_starts"]
    return out


# -- rounds, figures, report ------------------------------------------------------------

SYSTEMS = [f"tako{n}" for n in SUPERVISORS] + ["dbos"]
COLUMNS = [f"tako, {n} supervisor{'s' if n > 1 else ''}" for n in SUPERVISORS] + ["DBOS"]
ROWS = [  # (key, label, format)
    ("steps_per_s", "steps/s (runs of N no-op steps, started and finished)", "{:,.0f}"),
    ("runs_per_s", "  the same, runs (workflows)/s", "{:,.0f}"),
    ("starts_per_s", "starts/s (delayed an hour, pipelined on 4 connections)", "{:,.0f}"),
    (
        "resume_p50_ms",
        "signal -> next step starts, p50 (tako: signal via A, run on B)",
        "{:.2f} ms",
    ),
    ("resume_p99_ms", "  the same, p99", "{:.2f} ms"),
    ("signal_reply_p50_ms", "  signal -> its reply, p50", "{:.2f} ms"),
    ("resumed_on_a", "  share of runs resumed in A's worker", "{:.0%}"),
    ("least_runs_share", "steps: share of runs in the least busy supervisor", "{:.0%}"),
    ("steps commits_per_s", "steps: database commits/s (xact_commit)", "{:,.0f}"),
    ("commits_per_step", "steps: commits per step", "{:.3f}"),
    ("statements_per_step", "steps: statements per step (pg_stat_statements)", "{:.2f}"),
    ("steps pg_cpu_pct", "steps: PostgreSQL processes' CPU (of 100 % per core)", "{:.0f} %"),
    ("steps engine_cpu_pct", "steps: takod + workers' CPU (DBOS: its process)", "{:.0f} %"),
    ("steps client_cpu_pct", "steps: bench client's CPU", "{:.0f} %"),
    ("steps machine_busy_pct", "steps: machine busy (all cores)", "{:.0f} %"),
    ("steps active_backends", "steps: backends running a statement, mean", "{:.2f}"),
    ("commits_per_start", "starts: commits per start", "{:.3f}"),
    ("starts pg_cpu_pct", "starts: PostgreSQL processes' CPU", "{:.0f} %"),
    ("starts engine_cpu_pct", "starts: takod + workers' CPU (DBOS: its process)", "{:.0f} %"),
]


def med(rounds: list[dict[str, Any]], system: str, key: str) -> float | None:
    values = [r[system][key] for r in rounds if isinstance(r[system].get(key), int | float)]
    return statistics.median(values) if values else None


def ratio(rounds: list[dict[str, Any]], num: tuple[str, str], den: tuple[str, str]) -> float:
    """The median of per-round ratios."""
    values = []
    for r in rounds:
        a, b = r[num[0]].get(num[1]), r[den[0]].get(den[1])
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            values.append(a / b)
    return statistics.median(values) if values else float("nan")


def waits(rounds: list[dict[str, Any]], system: str) -> str:
    """The busy backends' most common wait events while steps ran (last round)."""
    last = rounds[-1][system]
    pairs = [(k[11:-2], v) for k, v in last.items() if k.startswith("steps wait ")]
    return ", ".join(f"{k} {v:.0f} %" for k, v in sorted(pairs, key=lambda p: -p[1]))


def render(rounds: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    size, ncpu = meta["size"], meta["nproc"]
    lines = [
        f"tako on PostgreSQL, {meta['date']}, commit {meta['commit']}: {meta['server_version']}, "
        f"{len(rounds)} round(s), {meta['seconds']:.0f} s, {ncpu} CPUs",
        f"steps: {size['runs']} runs x {size['steps']} steps; starts: {size['starts']:,} "
        f"(DBOS {size['dbos_starts']:,}); resume: {size['samples']} samples after 10 warm-up",
        "",
        "| figure | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for key, label, fmt in ROWS:
        cells = [med(rounds, s, key) for s in SYSTEMS]
        if all(c is None for c in cells):
            continue
        lines.append(
            f"| {label} | " + " | ".join("" if c is None else fmt.format(c) for c in cells) + " |"
        )
    raw = statistics.median(r["raw_commits_per_s"] for r in rounds)
    lines += ["", f"Raw single-row INSERT commits/s on one connection (median): {raw:,.0f}", ""]
    goals = [
        (
            "tako (1 supervisor) / DBOS, steps/s",
            ("tako1", "steps_per_s"),
            ("dbos", "steps_per_s"),
            20,
        ),
        (
            "tako (4 supervisors) / DBOS, steps/s",
            ("tako4", "steps_per_s"),
            ("dbos", "steps_per_s"),
            20,
        ),
        ("tako 4 / 1 supervisors, steps/s", ("tako4", "steps_per_s"), ("tako1", "steps_per_s"), 1),
        (
            "tako 4 / 1 supervisors, starts/s",
            ("tako4", "starts_per_s"),
            ("tako1", "starts_per_s"),
            1,
        ),
        (
            "tako / DBOS, starts/s (1 supervisor)",
            ("tako1", "starts_per_s"),
            ("dbos", "starts_per_s"),
            None,
        ),
        (
            "cross-supervisor / same-supervisor resume p50 (2 / 1)",
            ("tako2", "resume_p50_ms"),
            ("tako1", "resume_p50_ms"),
            None,
        ),
        (
            "tako (2 supervisors) / DBOS resume p50",
            ("tako2", "resume_p50_ms"),
            ("dbos", "resume_p50_ms"),
            None,
        ),
    ]
    lines += ["| ratio (median of per-round ratios) | value | goal | ok |", "|---|---|---|---|"]
    for label, num, den, goal in goals:
        value = ratio(rounds, num, den)
        ok = "" if goal is None else ("pass" if value >= goal else "**FAIL**")
        lines.append(f"| {label} | {value:.2f} | {'' if goal is None else f'>= {goal}'} | {ok} |")
    for n in SUPERVISORS[1:]:
        p50 = med(rounds, f"tako{n}", "resume_p50_ms") or float("nan")
        ok = "pass" if p50 < 5 else "**FAIL**"
        lines.append(
            f"| cross-supervisor resume p50, {n} supervisors (ms) | {p50:.2f} | < 5 | {ok} |"
        )
    for key, what in (("steps_per_s", "steps"), ("runs_per_s", "runs")):
        d = med(rounds, "dbos", key) or 0.0
        lines.append(f"| DBOS {what}/s per core ({ncpu} cores) | {d / ncpu:,.0f} | | |")
    lines.append(f"| DBOS published: workflows/s per database vCPU | {DBOS_PUBLISHED:,.0f} | | |")
    for s in SYSTEMS:
        lines.append(f"- busy backends' waits during steps, {s}: {waits(rounds, s)}")
    top = rounds[-1]["tako1"].get("top")
    if top:
        lines.append("- statements by calls during steps, tako 1 supervisor (last round):")
        lines += [f"  - {c:,} calls, {t:,.0f} ms: `{q[:110]}`" for q, c, t in top]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres", description=__doc__)
    parser.add_argument("--server", default=os.environ.get("BENCH_PG", DEFAULT_SERVER))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--starts", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--no-dbos", action="store_true")
    args = parser.parse_args(argv)
    problem = reachable(args.server)
    if problem is not None:
        print(f"PostgreSQL at {args.server} cannot be reached ({problem}): skipped")
        return 0
    q = args.quick
    size = {
        "runs": 20 if q else args.runs,
        "steps": 5 if q else args.steps,
        "starts": 200 if q else args.starts,
        "dbos_starts": 100 if q else args.starts // 2,
        "samples": 10 if q else args.samples,
    }
    systems = SYSTEMS[:-1] if args.no_dbos else SYSTEMS
    began = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    for r in range(1 if q else args.rounds):
        record: dict[str, Any] = {"dbos": {}}
        record["raw_commits_per_s"] = raw_commits(fresh_database(args.server, TAKO_DB), 1.0)
        for system in systems[r % len(systems) :] + systems[: r % len(systems)]:
            t0 = time.perf_counter()
            if system == "dbos":
                record[system] = dbos_turn(args.server, size)
            else:
                record[system] = tako_turn(args.server, int(system[4:]), size)
            print(f"round {r + 1} {system}: {time.perf_counter() - t0:.1f} s", flush=True)
        rounds.append(record)
    with psycopg.connect(db_url(args.server, "postgres")) as conn:
        version = conn.execute("SELECT version()").fetchone()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "server_version": str(version[0]).split(" on ")[0] if version else "?",
        "nproc": os.cpu_count() or 1,
        "size": size,
        "seconds": time.perf_counter() - began,
    }
    text = render(rounds, meta)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "postgres.json").write_text(json.dumps({"meta": meta, "rounds": rounds}, indent=1))
    (RESULTS / "postgres.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
