"""What takod counts for `GET /metrics`, and the Prometheus text it is read out as.

The hot paths (a checkpoint, a commit, a resume) only bump plain counters and
bisect into fixed buckets here, well under a microsecond each; prometheus-client
builds the exposition from them when someone scrapes. Counts that live in the
store (runs by workflow and status, approvals, the outbox) are read at scrape
time, so they are the app's own whichever supervisor answers; the rest
(steps, resumes, commits, workers, the ready queue) are this supervisor's.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tako._protocol import Assign
from tako.takod.storage.interface import StoreCounts

# seconds: a step's body (a fast function to a slow API call) and a resume (one commit
# and a hand-over: well under a millisecond to tens of milliseconds under load)
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0)
RESUME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
MAX_TRACKED = 100_000  # woken runs remembered until a worker takes them


class Buckets:
    """A histogram's counts, kept cheaply: one bisect and one increment per value."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=self.sum)


class Pool(NamedTuple):
    """What the worker pool says at scrape time."""

    workers: int
    ready: int
    in_flight: int


class Metrics:
    def __init__(self) -> None:
        self.steps = Buckets(STEP_BUCKETS)
        self.resumes = Buckets(RESUME_BUCKETS)
        self.batches = Buckets(BATCH_BUCKETS)  # step checkpoints per commit
        self.commits = 0
        self.writes = 0
        self.started = 0
        self.finished: dict[str, int] = {}  # status -> runs
        self._woken: dict[str, float] = {}  # run id -> when its resume began

    # -- the hot paths ----------------------------------------------------------------

    def step(self, ms: int) -> None:
        self.steps.observe(ms / 1000)

    def committed(self, writes: int, checkpoints: int) -> None:
        """Called on the writer thread after each commit."""
        self.commits += 1
        self.writes += writes
        if checkpoints:
            self.batches.observe(checkpoints)

    def woken(self, since: float, handed: int, queued: Sequence[str]) -> None:
        """Runs a signal, a decision or a timer made ready (`since`: `time.monotonic()`
        when that began): how many were `handed` to a worker now, and those `queued`."""
        now = time.monotonic()
        for _ in range(handed):
            self.resumes.observe(now - since)
        if len(self._woken) + len(queued) <= MAX_TRACKED:
            for rid in queued:
                self._woken[rid] = since

    def claimed(self, assigns: Sequence[Assign]) -> None:
        """Runs the pool handed to a worker: a queued resume ends here."""
        if not self._woken:
            return
        now = time.monotonic()
        for a in assigns:
            since = self._woken.pop(a.run_id, None)
            if since is not None:
                self.resumes.observe(now - since)

    def run_started(self) -> None:
        self.started += 1

    def run_finished(self, status: str) -> None:
        self.finished[status] = self.finished.get(status, 0) + 1

    # -- the scrape -------------------------------------------------------------------

    def exposition(self, store: StoreCounts, pool: Pool) -> bytes:
        """The Prometheus text format (version 0.0.4) of everything."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(lambda: self._families(store, pool)))
        return generate_latest(registry)

    def _families(self, store: StoreCounts, pool: Pool) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "tako_runs", "Runs in the store, by workflow and status", labels=["workflow", "status"]
        )
        for (workflow, status), n in sorted(store.runs.items()):
            runs.add_metric([workflow, status], n)
        yield runs
        yield self.steps.family("tako_step_seconds", "How long step bodies took")
        yield self.resumes.family(
            "tako_resume_seconds",
            "From a signal, decision or timer to the woken run's hand-over to a worker",
        )
        yield GaugeMetricFamily("tako_ready_runs", "Runs ready, waiting for a worker", pool.ready)
        yield GaugeMetricFamily("tako_runs_in_flight", "Runs held by a worker", pool.in_flight)
        yield GaugeMetricFamily("tako_workers", "Live worker processes", pool.workers)
        yield CounterMetricFamily("tako_commits", "Transactions committed", self.commits)
        yield CounterMetricFamily("tako_writes", "Writes committed (all kinds)", self.writes)
        yield self.batches.family(
            "tako_steps_per_commit", "Step checkpoints that shared one commit (group commit)"
        )
        yield CounterMetricFamily("tako_runs_started", "Runs started here", self.started)
        finished = CounterMetricFamily("tako_runs_finished", "Runs ended here", labels=["status"])
        for status, n in sorted(self.finished.items()):
            finished.add_metric([status], n)
        yield finished
        yield GaugeMetricFamily(
            "tako_approvals_pending", "Approval requests nobody has decided yet",
            store.approvals_pending,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "tako_approvals_overdue",
            "Pending approval requests a reminder or an escalation has already fired for",
            store.approvals_overdue,
        )
        yield GaugeMetricFamily(
            "tako_outbox_backlog", "Approval events not yet delivered to a notifier or webhook",
            store.outbox_backlog,
        )  # fmt: skip


class _Collector:
    def __init__(self, families: Callable[[], Iterator[Metric]]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return self.families()
