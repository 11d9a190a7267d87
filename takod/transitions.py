"""What a run's status becomes on each event: pure functions, no I/O.

The store applies these decisions in SQL; keeping them here lets the rules of
the run rules (retries, backoff, cancel and retry eligibility) be read and tested in
one place.
"""

from __future__ import annotations

import random
from enum import StrEnum

import msgspec

from tako._durations import backoff_seconds


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
PARKED = frozenset({RunStatus.SLEEPING, RunStatus.WAITING})
CANCELLABLE = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SLEEPING, RunStatus.WAITING}
)
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


class Outcome(msgspec.Struct, frozen=True):
    """The decision for a run whose handler ended: its new status and fields."""

    status: RunStatus
    attempts: int
    wake_at: int | None = None


def on_handler_end(
    outcome: str, *, attempts: int, max_attempts: int, now_ms: int, rng: random.Random | None = None
) -> Outcome:
    """An exception retries with backoff until attempts run out.

    `outcome` is what the worker reported: "completed", "failed" (an exception
    that may be retried), "fatal" (NonRetryable, an unconvertible payload, an
    unencodable result) or "cancelled" (step.bail).
    """
    if outcome == "completed":
        return Outcome(RunStatus.COMPLETED, attempts)
    if outcome == "cancelled":
        return Outcome(RunStatus.CANCELLED, attempts)
    if outcome == "failed" and attempts < max_attempts:
        delay_ms = int(backoff_seconds(attempts, rng) * 1000)
        return Outcome(RunStatus.PENDING, attempts + 1, now_ms + delay_ms)
    return Outcome(RunStatus.FAILED, attempts)


def on_worker_crash(*, crashes: int, alone: bool, attempts: int, max_attempts: int) -> Outcome:
    """A worker died holding this run. Only a run that crashed a worker it had
    to itself is charged an attempt; innocent neighbours are requeued free."""
    if not alone:
        return Outcome(RunStatus.PENDING, attempts)
    if attempts < max_attempts:
        return Outcome(RunStatus.PENDING, attempts + 1)
    return Outcome(RunStatus.FAILED, attempts)
