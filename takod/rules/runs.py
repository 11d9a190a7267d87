"""What a run's status becomes on each event: pure functions, no I/O.

Retries and backoff, crash attribution, what a park becomes, which runs may be
cancelled or retried, and what a due timer does. Backends apply these
decisions; keeping them here lets them be read and tested in one place.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import msgspec

from tako._durations import backoff_seconds
from tako._errors import NotAllowed
from tako._records import FINISHED, PARKED, RunStatus

__all__ = ["FINISHED", "PARKED", "RunStatus"]  # re-exported: the rules' vocabulary
CANCELLABLE = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SLEEPING, RunStatus.WAITING}
)
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.CANCELLED})


class Outcome(msgspec.Struct, frozen=True):
    """The decision for a run whose handler ended: its new status and fields."""

    status: RunStatus
    attempts: int
    wake_at: int | None = None
    parent: str | None = None  # the parent run its end made due (a step.invoke)


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


def on_worker_crash(*, alone: bool, attempts: int, max_attempts: int) -> Outcome:
    """A worker died holding this run. Only a run that crashed a worker it had
    to itself is charged an attempt; innocent neighbours are requeued free."""
    if not alone:
        return Outcome(RunStatus.PENDING, attempts)
    if attempts < max_attempts:
        return Outcome(RunStatus.PENDING, attempts + 1)
    return Outcome(RunStatus.FAILED, attempts)


def on_cancel(run_id: str, status: RunStatus) -> RunStatus:
    """What a cancel does: a running run is asked to stop at its next step boundary
    (it stays running); any other unfinished run is cancelled now."""
    if status not in CANCELLABLE:
        raise NotAllowed(f"run {run_id} is {status}; only unfinished runs can be cancelled")
    return RunStatus.RUNNING if status == RunStatus.RUNNING else RunStatus.CANCELLED


def check_retry(run_id: str, status: RunStatus) -> None:
    """Only a failed or cancelled run can be retried."""
    if status not in RETRYABLE:
        raise NotAllowed(f"run {run_id} is {status}; only failed or cancelled runs can be retried")


class Parking(NamedTuple):
    """What a park becomes.

    `run_status` None: the run does not park, its step completes with `result`
    and the worker goes on. Else the run parks with that status until
    `wake_at` (or a signal / decision), its step recorded as `step_status`."""

    run_status: RunStatus | None
    step_status: str
    result: bytes | None = None
    wake_at: int | None = None
    waiting_for: str | None = None


NULL = b"null"


def on_park(
    kind: str,
    *,
    now: int,
    wake_at: int | None = None,
    found: bytes | None = None,
    waiting_for: str | None = None,
) -> Parking:
    """`found`: what already answers the step (a kept signal a wait just consumed, the
    decision of an approval decided while the run was away)."""
    if kind in ("wait", "approval", "child"):
        if found is not None:
            return Parking(None, "completed", found)
        return Parking(RunStatus.WAITING, "waiting", None, wake_at, waiting_for)
    assert wake_at is not None, f"a {kind} park needs a due time"
    if kind == "sleep":
        if wake_at <= now:
            return Parking(None, "completed", NULL, wake_at)
        return Parking(RunStatus.SLEEPING, "sleeping", None, wake_at)
    # a step waiting out its retry backoff: it is still running, between attempts
    return Parking(RunStatus.SLEEPING, "running", None, wake_at)
