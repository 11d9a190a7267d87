"""What each figure means, its target, and the table that puts them side by side.

Every figure gets a ratio to the raw-SQLite baseline measured next to it in the
same round: a rate is divided by raw single-row commits/s ("0.50x" = half as
many checkpoints as bare commits); a latency is counted in raw commits ("4.0
commits" = as long as four bare commits one after the other).
"""

from __future__ import annotations

import operator
import statistics
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["rate", "latency", "other"]


@dataclass(frozen=True)
class Spec:
    scenario: int
    key: str
    label: str
    unit: str
    target: tuple[str, float] | None = None  # (">=" | "<=", value)
    kind: Kind = "other"
    mode: str | None = None  # the baseline's durability; None: the run's
    vs_dbos: float | None = None  # the goal is this many times DBOS's figure, same run


SPECS = [
    Spec(
        11,
        "headline_sync_steps_per_s",
        "steps committed/s, defaults, 1,000 runs woken by one signal x 10 sync lambda steps",
        "/s",
        None,
        "rate",
        vs_dbos=90,
    ),
    Spec(
        11,
        "headline_async_steps_per_s",
        "  the same, async def steps",
        "/s",
        None,
        "rate",
    ),
    Spec(11, "headline_sync_vs_async", "  sync / async", "x"),
    Spec(
        11,
        "headline_tuned_steps_per_s",
        "  the sync steps, best tuning (concurrency 500, 2 workers)",
        "/s",
        None,
        "rate",
    ),
    Spec(11, "headline_default_vs_tuned", "  defaults / best tuning", "x", (">=", 0.6)),
    Spec(
        11,
        "checkpoint_ceiling",
        "  ceiling: one writer thread committing only checkpoints, 1,000 a transaction",
        "/s",
        None,
        "rate",
    ),
    Spec(11, "headline_tuned_vs_ceiling", "  best tuning / ceiling", "x", (">=", 0.7)),
    Spec(
        1,
        "steps_per_s",
        "steps committed/s, 200 runs x 10 no-op steps",
        "/s",
        None,
        "rate",
    ),
    Spec(
        1,
        "steps_per_s_large",
        "steps committed/s, 1,000 runs x 20 steps",
        "/s",
        (">=", 50_000),
        "rate",
    ),
    Spec(
        1,
        "checkpoint_ceiling_1",
        "  ceiling: one writer thread committing only checkpoints",
        "/s",
        None,
        "rate",
    ),
    Spec(1, "steps_vs_ceiling", "  1,000 x 20 / ceiling", "x", (">=", 0.7)),
    Spec(
        2,
        "ms_per_step_full",
        "per step, 1 run x 1,000 steps, full",
        "ms",
        ("<=", 0.6),
        "latency",
        "full",
    ),
    Spec(
        2,
        "ms_per_step_normal",
        "per step, 1 run x 1,000 steps, normal",
        "ms",
        ("<=", 0.25),
        "latency",
        "normal",
    ),
    Spec(
        3,
        "starts_per_s",
        "starts committed/s, 10,000 pipelined on 4 connections",
        "/s",
        (">=", 30_000),
        "rate",
    ),
    Spec(
        3,
        "sequential_start_p50_ms",
        "  one client, one start at a time: per start, p50",
        "ms",
        None,
        "latency",
    ),
    Spec(3, "round_trip_p50_ms", "  a round trip on that connection, p50", "ms", None, "latency"),
    Spec(3, "sequential_start_vs_floor", "  per start / (round trip + one raw commit)", "x"),
    Spec(
        4,
        "warm_resume_p50_ms",
        "signal -> next step starts, warm worker, p50",
        "ms",
        ("<=", 1),
        "latency",
    ),
    Spec(
        4,
        "warm_resume_p99_ms",
        "signal -> next step starts, warm worker, p99",
        "ms",
        ("<=", 5),
        "latency",
    ),
    Spec(4, "signal_reply_p50_ms", "signal -> its reply (committed), p50", "ms", None, "latency"),
    Spec(
        5,
        "cold_resume_p50_ms",
        "signal -> next step starts, no worker alive, p50",
        "ms",
        ("<=", 150),
        "latency",
    ),
    Spec(5, "cold_spawn_ms", "  of which interpreter start (timed apart)", "ms"),
    Spec(5, "cold_imports_ms", "  of which worker_runtime imports (timed apart)", "ms"),
    Spec(5, "cold_app_load_ms", "  of which loading the app's workflows (timed apart)", "ms"),
    Spec(
        5,
        "cold_rest_ms",
        "  of which loop start, connect, hello, claim, assign (by difference)",
        "ms",
    ),
    Spec(6, "parked_runs", "parked runs created through the engine", ""),
    Spec(6, "park_rate", "runs parked/s (start, assign, park: all committed)", "/s", None, "rate"),
    Spec(6, "takod_rss_mb", "takod RSS with them parked", "MB", ("<=", 150)),
    Spec(6, "workers_parked", "workers alive with them parked", "", ("<=", 0)),
    Spec(6, "bytes_per_parked_run", "database per parked run", "B", ("<=", 1024)),
    Spec(
        6,
        "parked_resume_p50_ms",
        "signal one of them -> next step starts, p50",
        "ms",
        ("<=", 2),
        "latency",
    ),
    Spec(7, "timer_late_p50_ms", "lone timer: next step starts after due time, p50", "ms"),
    Spec(
        7, "timer_late_p99_ms", "lone timer: next step starts after due time, p99", "ms", ("<=", 10)
    ),
    Spec(
        7,
        "herd_all_resumed_s",
        "100,000 runs sleeping until one instant: last resumed after it",
        "s",
        ("<=", 5),
    ),
    Spec(7, "herd_p50_s", "  the same, median run", "s"),
    Spec(8, "worker_rss_mb", "worker RSS, 1,000 runs in flight in async steps", "MB", ("<=", 200)),
    Spec(8, "worker_idle_rss_mb", "  the same worker idle, before", "MB"),
    Spec(8, "worker_kib_per_run", "  per run in flight", "KiB"),
    Spec(
        9,
        "http_starts_per_s",
        "starts committed/s, POST /api/runs, 16 keep-alive HTTP clients",
        "/s",
        (">=", 5_689),
        "rate",
    ),
    Spec(
        9,
        "socket16_starts_per_s",
        "  the same start as 16 socket clients, one request in flight each",
        "/s",
        None,
        "rate",
    ),
    Spec(
        9,
        "pipelined_starts_per_s",
        "  pipelined on 4 socket connections (as #3)",
        "/s",
        None,
        "rate",
    ),
    Spec(9, "http_vs_socket", "  HTTP / socket, 16 clients each", "x"),
    Spec(
        9, "http_vs_tako_sh", "  HTTP / tako.sh's 5,689 enqueues/s (Rust, 2 vCPU)", "x", (">=", 1)
    ),
    Spec(
        10,
        "approve_resume_p50_ms",
        "approve over HTTP -> next step starts, warm worker, p50",
        "ms",
        None,
        "latency",
    ),
    Spec(
        10,
        "approve_resume_p99_ms",
        "approve over HTTP -> next step starts, warm worker, p99",
        "ms",
        None,
        "latency",
    ),
    Spec(10, "approve_reply_p50_ms", "  approve -> its HTTP reply, p50", "ms", None, "latency"),
    Spec(
        10,
        "approve_socket_p50_ms",
        "  approve over the socket -> next step starts, p50",
        "ms",
        None,
        "latency",
    ),
    Spec(
        10,
        "approve_socket_p99_ms",
        "  approve over the socket -> next step starts, p99",
        "ms",
        None,
        "latency",
    ),
]

_OPS = {">=": operator.ge, "<=": operator.le}


def meets(value: float, target: tuple[str, float]) -> bool:
    return bool(_OPS[target[0]](value, target[1]))


def vs_sqlite(spec: Spec, value: float, commits_per_s: float) -> float | None:
    if spec.kind == "rate":
        return value / commits_per_s
    if spec.kind == "latency":
        return value / (1000 / commits_per_s)
    return None


def summarize(spec: Spec, rounds: list[dict[str, Any]], durability: str) -> dict[str, Any] | None:
    """Medians over rounds of one figure, its ratios, and whether it meets its target."""
    mine = [r for r in rounds if spec.key in r.get("tako", {})]
    if not mine:
        return None
    value = statistics.median(r["tako"][spec.key] for r in mine)
    mode = spec.mode or durability
    ratios = [
        x
        for r in mine
        if mode in r.get("sqlite", {})
        and (x := vs_sqlite(spec, r["tako"][spec.key], r["sqlite"][mode])) is not None
    ]
    theirs = [r["dbos"][spec.key] for r in rounds if spec.key in r.get("dbos", {})]
    dbos = statistics.median(theirs) if theirs else None
    passed = meets(value, spec.target) if spec.target else None
    if spec.vs_dbos is not None and dbos:
        passed = value / dbos >= spec.vs_dbos
    return {
        "scenario": spec.scenario,
        "key": spec.key,
        "label": spec.label,
        "unit": spec.unit,
        "value": value,
        "rounds": len(mine),
        "target": list(spec.target) if spec.target else None,
        "vs_dbos_target": spec.vs_dbos,
        "pass": passed,
        "vs_sqlite": statistics.median(ratios) if ratios else None,
        "kind": spec.kind,
        "dbos": dbos,
        "vs_dbos": value / dbos if dbos else None,
    }


def fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def _cell_target(target: list[Any] | None, unit: str, vs_dbos: float | None = None) -> str:
    if vs_dbos is not None:
        return f"≥ {vs_dbos:g}x DBOS"
    if not target:
        return ""
    return f"{'≥' if target[0] == '>=' else '≤'} {fmt(target[1])} {unit}".strip()


def _cell_ratio(row: dict[str, Any]) -> str:
    x = row["vs_sqlite"]
    if x is None:
        return ""
    return f"{x:.2f}x" if row["kind"] == "rate" else f"{x:.1f} commits"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| # | figure | measured | target | ok | vs raw SQLite | DBOS | tako / DBOS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ok = {True: "pass", False: "**FAIL**", None: ""}[row["pass"]]
        dbos = f"{fmt(row['dbos'])} {row['unit']}".strip() if row["dbos"] is not None else ""
        vs_dbos = f"{row['vs_dbos']:.2f}" if row["vs_dbos"] is not None else ""
        lines.append(
            f"| {row['scenario']} | {row['label']} | {fmt(row['value'])} {row['unit']} | "
            f"{_cell_target(row['target'], row['unit'], row.get('vs_dbos_target'))} | {ok} | "
            f"{_cell_ratio(row)} | "
            f"{dbos} | {vs_dbos} |"
        )
    return "\n".join(lines)


LEGEND = (
    "vs raw SQLite: a rate divided by raw single-row commits/s (WAL, same synchronous "
    "level) measured in the same round; a latency counted in raw commits (its time "
    "divided by one raw commit's). tako / DBOS: tako's figure divided by DBOS's (above 1 "
    "is better for rates, worse for latencies). Medians of the rounds shown in `rounds`."
)
