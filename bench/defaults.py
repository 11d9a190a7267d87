"""`python -m bench.defaults [--rounds N]`: the measurements behind the shipped defaults.

The headline workload (1,000 runs woken by one signal, 10 sync lambda steps
each) under a grid of `[workers]` settings: runs in flight per worker
(`concurrency`) and worker processes (`max_workers`). Each cell reports steps
committed/s (median of rounds, the cells of one round taken in turn so a noisy
neighbour hurts them alike) and the peak resident memory of the workers.
docs/configuration.md quotes the table to justify each default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.engine import BenchError, Takod, rss_mb, takod

GRID = [(c, w) for w in (1, 2, 3) for c in (100, 250, 500, 1000)]


def one(concurrency: int, workers: int, runs: int, steps: int = 10) -> tuple[float, float]:
    """(steps/s, peak worker RSS in MB summed over workers) for one cell."""
    cfg = {"workers": {"concurrency": concurrency, "max_workers": workers}}
    with takod(**cfg) as t:
        for i in range(runs):
            t.client.start("checkout-sync", {"order": i})
        t.wait_for_count("waiting", runs, timeout=120, poll=0.05)
        began = time.time_ns()
        t.client.signal("go")
        peak = _watch_rss(t, runs)
        ends = [int(x) for x in t.results("checkout-sync")]
    return runs * steps / ((max(ends) - began) / 1e9), peak


def _watch_rss(t: Takod, runs: int) -> float:
    """Sample the workers' memory until the runs are done; cheap enough (a few /proc
    reads every 50 ms, the process list every 0.5 s) not to slow what it watches."""
    peak, pids, listed = 0.0, t.worker_pids(), time.monotonic()
    deadline = listed + 600
    while t.count("completed") < runs:
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"{runs} runs did not complete in 600 s")
        if now - listed > 0.5:
            pids, listed = t.worker_pids(), now
        peak = max(peak, sum(rss_mb(pid) for pid in pids))
        time.sleep(0.05)
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.defaults", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args(argv)
    rates: dict[tuple[int, int], list[float]] = {cell: [] for cell in GRID}
    rss: dict[tuple[int, int], list[float]] = {cell: [] for cell in GRID}
    for r in range(args.rounds):
        order = GRID[r % len(GRID) :] + GRID[: r % len(GRID)]
        for cell in order:
            rate, peak = one(*cell, runs=args.runs)
            rates[cell].append(rate)
            rss[cell].append(peak)
            print(
                f"round {r + 1} concurrency {cell[0]} workers {cell[1]}: {rate:,.0f} steps/s, "
                f"{peak:.0f} MB",
                flush=True,
            )
    best = max(statistics.median(v) for v in rates.values())
    print("\n| concurrency | max_workers | steps/s | of best | peak worker RSS |")
    print("|---:|---:|---:|---:|---:|")
    for cell in GRID:
        rate = statistics.median(rates[cell])
        print(
            f"| {cell[0]} | {cell[1]} | {rate:,.0f} | {rate / best:.0%} | "
            f"{statistics.median(rss[cell]):.0f} MB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
