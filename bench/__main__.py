"""`python -m bench [--quick] [--only N,...] [--durability full|normal]`.

Runs the scenarios of docs/performance.md against a real takod, each for a few
rounds. In every round the systems take turns (raw SQLite, tako, DBOS when
installed), in an order that rotates from round to round, so that a noisy
neighbour hurts them alike; figures are medians over rounds, each with its
ratio to the raw-SQLite baseline of its own round. Writes
bench/results/latest.json and latest.md. `--quick` is a smoke test of the
harness (tiny sizes, one round), never a speed check: it exits 0 whatever the
figures, and 1 only when a scenario could not be measured at all.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import platform
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import scenarios as sc
from bench.baseline import sqlite_commits_per_second
from bench.report import LEGEND, SPECS, summarize, table

RESULTS = Path(__file__).parent / "results"
NO_DBOS = "DBOS not installed: pip install -e '.[peers]'"
LEFT_OUT = "DBOS left out (--no-peers)"


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    run: Callable[[sc.Ctx], sc.Figures]
    modes: tuple[str, ...] = ()  # the baseline's durability modes; () = the run's
    once: bool = False  # too long to repeat: one round only


SCENARIOS = [  # the headline first: what users write, with every setting as shipped
    Scenario(11, "headline: 1,000 runs woken by one signal, 10 steps each, defaults", sc.headline),
    Scenario(1, "concurrent runs of no-op steps", sc.throughput),
    Scenario(2, "one run, sequential steps", sc.sequential, ("full", "normal")),
    Scenario(3, "pipelined starts", sc.starts),
    Scenario(4, "signal to resume, warm worker", sc.warm_resume),
    Scenario(5, "resume from zero workers", sc.cold_resume),
    Scenario(6, "parked runs", sc.parked, once=True),
    Scenario(7, "timers", sc.timers, once=True),
    Scenario(8, "runs in flight in one worker", sc.full_worker),
    Scenario(9, "starts over HTTP, 16 clients, next to the socket", sc.http_starts),
    Scenario(10, "approve over HTTP to resume, warm worker", sc.approve_resume),
]


def dbos_jobs(number: int, ctx: sc.Ctx) -> list[tuple[str, dict[str, Any]]]:
    """The DBOS counterparts of a scenario (bench/peers_dbos.py): (workload, arguments).
    Sizes are cut where DBOS would take minutes; its figures are rates and latencies."""
    mode = ctx.durability
    jobs: dict[int, list[tuple[str, dict[str, Any]]]] = {
        1: [("throughput", {"runs": ctx.size(200, 20), "steps": ctx.size(10, 5), "mode": mode})],
        2: [("sequential", {"steps": ctx.size(1000, 100), "mode": m}) for m in ("full", "normal")],
        3: [("starts", {"n": ctx.size(2000, 200), "mode": mode})],
        4: [("warm_resume", {"samples": ctx.size(200, 10), "mode": mode})],
        11: [
            ("headline", {"runs": ctx.size(1000, 20), "steps": 10, "variant": v, "mode": mode})
            for v in ("sync", "async")
        ],
    }
    return jobs.get(number, [])


def run_dbos(jobs: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for workload, args in jobs:
        argv = [sys.executable, "-m", "bench.peers_dbos", workload, json.dumps(args)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"DBOS {workload} failed: {proc.stderr.strip()[-2000:]}")
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    if "headline_sync_steps_per_s" in out and "headline_async_steps_per_s" in out:
        out["headline_sync_vs_async"] = (
            out["headline_sync_steps_per_s"] / out["headline_async_steps_per_s"]
        )
    return out


def run_scenario(
    scenario: Scenario, ctx: sc.Ctx, rounds: int, dbos: bool
) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """Its rounds (each: sqlite baselines, tako figures, DBOS figures), notes, and error."""
    modes = scenario.modes or (ctx.durability,)
    jobs = dbos_jobs(scenario.number, ctx) if dbos else []
    systems = ["sqlite", "tako"] + (["dbos"] if jobs else [])
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for r in range(1 if scenario.once else rounds):
        record: dict[str, Any] = {"round": r + 1, "sqlite": {}, "tako": {}, "dbos": {}}
        out.append(record)
        for system in systems[r % len(systems) :] + systems[: r % len(systems)]:
            began = time.perf_counter()
            try:
                if system == "sqlite":
                    for mode in modes:
                        seconds = 0.25 if ctx.quick else 1.0
                        record["sqlite"][mode] = sqlite_commits_per_second(seconds, mode)
                elif system == "tako":
                    figures = scenario.run(ctx)
                    record["tako"] = {k: v for k, v in figures.items() if not isinstance(v, str)}
                    notes = [v for v in figures.values() if isinstance(v, str)]
                else:
                    record["dbos"] = run_dbos(jobs)
            except Exception as exc:
                traceback.print_exc()
                return out, notes, f"{system}, round {r + 1}: {type(exc).__name__}: {exc}"
            ctx.log(f"  round {r + 1} {system}: {time.perf_counter() - began:.1f} s")
    return out, notes, None


def machine() -> dict[str, Any]:
    def sh(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": sh("nproc"),
        "memory": sh("free", "-h"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": sh("git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test of the harness")
    parser.add_argument("--only", help="scenario numbers, e.g. 1,4; pg: bench/postgres.py")
    parser.add_argument("--durability", choices=("full", "normal"), default="full")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (3; 1 with --quick)")
    parser.add_argument("--parked", type=int, help="scenario 6 size (1,000,000; 2,000 quick)")
    parser.add_argument(
        "--parked-budget", type=float, default=300, help="seconds scenario 6 may spend creating"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="leave DBOS out even when it is installed"
    )
    args = parser.parse_args(argv)
    if args.only and "pg" in args.only.split(","):  # PostgreSQL: bench/postgres.py, on its own
        from bench import postgres

        return postgres.main(["--rounds", str(args.rounds)] if args.rounds else [])
    only = {int(n) for n in args.only.split(",")} if args.only else None
    rounds = args.rounds or (1 if args.quick else 3)
    ctx = sc.Ctx(
        quick=args.quick,
        durability=args.durability,
        parked=args.parked or (2_000 if args.quick else 1_000_000),
        budget=args.parked_budget,
        log=lambda line: print(line, flush=True),
    )
    dbos = importlib.util.find_spec("dbos") is not None and not args.no_peers
    if not dbos:
        print(LEFT_OUT if args.no_peers else NO_DBOS)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "settings": {"quick": args.quick, "durability": args.durability, "rounds": rounds},
        "dbos": dbos,
        "dbos_note": "" if dbos else LEFT_OUT if args.no_peers else NO_DBOS,
        "scenarios": {},
    }
    rows, notes, errors = [], [], []
    for scenario in SCENARIOS:
        if only and scenario.number not in only:
            continue
        print(f"{scenario.number}. {scenario.title}", flush=True)
        t0 = time.perf_counter()
        data, its_notes, error = run_scenario(scenario, ctx, rounds, dbos)
        results["scenarios"][scenario.number] = {
            "title": scenario.title,
            "rounds": data,
            "notes": its_notes,
            "error": error,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        notes += its_notes
        if error:
            errors.append(f"scenario {scenario.number}: {error}")
        for spec in SPECS:
            if spec.scenario == scenario.number:
                row = summarize(spec, data, args.durability)
                if row is not None:
                    rows.append(row)
    results["figures"] = rows
    results["seconds"] = round(time.perf_counter() - began, 1)
    text = render(results, rows, notes, errors)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(text + "\n")
    return 1 if errors else 0


def render(
    results: dict[str, Any], rows: list[dict[str, Any]], notes: list[str], errors: list[str]
) -> str:
    m, s = results["machine"], results["settings"]
    head = [
        f"tako bench, {m['date']}, commit {m['commit'] or '?'}: durability {s['durability']}, "
        f"{s['rounds']} round(s), {results['seconds']:.0f} s",
        f"{m['nproc']} CPUs, Python {m['python']}, SQLite {m['sqlite']}, {m['platform']}",
    ]
    if s["quick"]:
        head.append("QUICK: tiny sizes, one round; a smoke test of the harness, not a speed check.")
    if not results["dbos"]:
        head.append(results["dbos_note"])
    body = ["", table(rows), "", LEGEND]
    body += [f"- {n}" for n in notes]
    body += [f"- ERROR {e}" for e in errors]
    return "\n".join(head + body)


if __name__ == "__main__":
    sys.exit(main())
