"""`python -m bench.cpu_split [WORKFLOW] [--runs N] [--concurrency N]`: CPU per step, by process.

The headline workload (runs parked on "go", one signal, 10 steps each; the
sync lambdas by default, `checkout-async` for async bodies) with the default
settings unless `--concurrency` says otherwise, and the CPU time each
process spent on it, read from /proc before the signal and after the last
run completed: takod's trio thread, takod's other threads (the SQLite
writer), and the worker. Divided by the steps, and by the wall time (the
share of one core each kept busy): a stage near 100 % is the bottleneck;
none near it means the round trip's latency is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.engine import takod

TICK = os.sysconf("SC_CLK_TCK")


def _seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _takod(pid: int) -> dict[str, float]:
    out = {"trio thread": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "trio thread" if task.name == str(pid) else "other threads"
        out[name] += _seconds(task / "stat")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_split", description=__doc__)
    parser.add_argument("workflow", nargs="?", default="checkout-sync")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int)
    args = parser.parse_args(argv)
    tuning: dict[str, dict[str, Any]] = {}
    if args.concurrency:
        tuning = {"workers": {"concurrency": args.concurrency}}
    steps = args.runs * 10
    with takod(**tuning) as t:
        for i in range(args.runs):
            t.client.start(args.workflow, {"order": i})
        t.wait_for_count("waiting", args.runs, timeout=300, poll=0.05)
        workers = t.worker_pids()
        before = _takod(t.pid) | {f"worker {p}": _seconds(Path(f"/proc/{p}/stat")) for p in workers}
        began = time.time_ns()
        t.client.signal("go")
        t.wait_for_count("completed", args.runs, timeout=600, poll=0.1)
        after = _takod(t.pid) | {f"worker {p}": _seconds(Path(f"/proc/{p}/stat")) for p in workers}
        wall = (max(int(x) for x in t.results(args.workflow)) - began) / 1e9
    print(f"{args.workflow}: {steps / wall:,.0f} steps/s over {wall:.2f} s")
    for name, end in after.items():
        spent = end - before[name]
        print(f"  {name}: {spent / steps * 1e6:.0f} µs/step ({spent / wall:.0%} of a core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
