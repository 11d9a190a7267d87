"""The pure run-state rules of SPEC §4: retries with backoff, crash attribution, who may
be cancelled or retried."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from takod.transitions import (
    CANCELLABLE,
    FINISHED,
    PARKED,
    RETRYABLE,
    Outcome,
    RunStatus,
    on_handler_end,
    on_worker_crash,
)

NOW = 1_800_000_000_000


# -- the status sets versus SPEC §4 ---------------------------------------------------------


def test_statuses_are_the_seven_of_the_spec() -> None:
    assert {s.value for s in RunStatus} == {
        "pending",
        "running",
        "sleeping",
        "waiting",
        "completed",
        "failed",
        "cancelled",
    }
    assert RunStatus.PENDING == "pending"  # stored and sent as plain strings


def test_finished_statuses() -> None:
    assert {"completed", "failed", "cancelled"} == FINISHED


def test_cancellable_is_every_unfinished_status() -> None:
    # "any pending, sleeping, waiting or running run can be cancelled from outside"
    assert {"pending", "sleeping", "waiting", "running"} == CANCELLABLE
    assert set(RunStatus) - FINISHED == CANCELLABLE
    assert not CANCELLABLE & FINISHED


def test_retryable_is_failed_or_cancelled() -> None:
    # "a failed or cancelled run can be re-queued"
    assert {"failed", "cancelled"} == RETRYABLE
    assert RETRYABLE < FINISHED
    assert RunStatus.COMPLETED not in RETRYABLE


def test_parked_statuses() -> None:
    assert {"sleeping", "waiting"} == PARKED
    assert PARKED < CANCELLABLE


# -- on_handler_end ---------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 4), (4, 4), (9, 1)])
def test_completed_is_completed_whatever_the_attempts(attempts: int, max_attempts: int) -> None:
    out = on_handler_end("completed", attempts=attempts, max_attempts=max_attempts, now_ms=NOW)
    assert out == Outcome(RunStatus.COMPLETED, attempts, None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 4), (4, 4)])
def test_cancelled_by_bail_is_never_retried(attempts: int, max_attempts: int) -> None:
    out = on_handler_end("cancelled", attempts=attempts, max_attempts=max_attempts, now_ms=NOW)
    assert out == Outcome(RunStatus.CANCELLED, attempts, None)


@pytest.mark.parametrize(
    ("attempts", "base_s"), [(1, 1), (2, 2), (3, 4), (5, 16), (12, 2048), (13, 3600), (30, 3600)]
)
def test_failed_with_attempts_left_is_rescheduled_with_backoff(attempts: int, base_s: int) -> None:
    rng = random.Random(attempts)
    for _ in range(50):
        out = on_handler_end(
            "failed", attempts=attempts, max_attempts=attempts + 1, now_ms=NOW, rng=rng
        )
        assert out.status == RunStatus.PENDING
        assert out.attempts == attempts + 1
        assert out.wake_at is not None
        delay_ms = out.wake_at - NOW
        assert int(base_s * 800) <= delay_ms <= min(3_600_000, int(base_s * 1200))


def test_failed_backoff_uses_the_rng_it_is_given() -> None:
    def wake(seed: int) -> int | None:
        out = on_handler_end(
            "failed", attempts=3, max_attempts=5, now_ms=NOW, rng=random.Random(seed)
        )
        return out.wake_at

    assert wake(1) == wake(1)
    assert len({wake(seed) for seed in range(20)}) > 10  # jitter spreads the wake-ups


@pytest.mark.parametrize(("attempts", "max_attempts"), [(4, 4), (1, 1), (5, 4)])
def test_failed_with_no_attempts_left_is_failed(attempts: int, max_attempts: int) -> None:
    out = on_handler_end("failed", attempts=attempts, max_attempts=max_attempts, now_ms=NOW)
    assert out == Outcome(RunStatus.FAILED, attempts, None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 4), (3, 4), (4, 4)])
def test_fatal_fails_at_once(attempts: int, max_attempts: int) -> None:
    out = on_handler_end("fatal", attempts=attempts, max_attempts=max_attempts, now_ms=NOW)
    assert out == Outcome(RunStatus.FAILED, attempts, None)


def test_a_run_with_retries_3_gets_exactly_4_attempts() -> None:
    attempts, max_attempts, now = 1, 4, NOW
    rng = random.Random(0)
    seen = []
    while True:
        out = on_handler_end(
            "failed", attempts=attempts, max_attempts=max_attempts, now_ms=now, rng=rng
        )
        seen.append(attempts)
        if out.status != RunStatus.PENDING:
            break
        assert out.wake_at is not None
        assert out.wake_at > now
        attempts, now = out.attempts, out.wake_at
    assert seen == [1, 2, 3, 4]
    assert out == Outcome(RunStatus.FAILED, 4, None)


@settings(max_examples=200, deadline=None, database=None)
@given(
    outcome=st.sampled_from(["completed", "failed", "fatal", "cancelled"]),
    attempts=st.integers(1, 40),
    extra=st.integers(-3, 5),
    seed=st.integers(0, 1000),
)
def test_handler_end_property(outcome: str, attempts: int, extra: int, seed: int) -> None:
    max_attempts = max(1, attempts + extra)
    out = on_handler_end(
        outcome, attempts=attempts, max_attempts=max_attempts, now_ms=NOW, rng=random.Random(seed)
    )
    if out.status == RunStatus.PENDING:
        assert outcome == "failed"
        assert attempts < max_attempts
        assert out.attempts == attempts + 1
        assert out.wake_at is not None
        assert NOW + 800 <= out.wake_at <= NOW + 3_600_000
    else:
        assert out.status in FINISHED
        assert out.attempts == attempts  # a finished run is never charged more
        assert out.wake_at is None


# -- on_worker_crash ----------------------------------------------------------------------------


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 4), (4, 4), (1, 1)])
def test_crash_not_alone_requeues_without_charge(attempts: int, max_attempts: int) -> None:
    # the decision reads `alone` only; how often the run crashed before does not enter it
    out = on_worker_crash(crashes=1, alone=False, attempts=attempts, max_attempts=max_attempts)
    assert out == Outcome(RunStatus.PENDING, attempts, None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 4), (3, 4), (1, 2)])
def test_crash_alone_is_charged_an_attempt(attempts: int, max_attempts: int) -> None:
    out = on_worker_crash(crashes=2, alone=True, attempts=attempts, max_attempts=max_attempts)
    assert out == Outcome(RunStatus.PENDING, attempts + 1, None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(4, 4), (1, 1)])
def test_crash_alone_on_the_last_attempt_fails(attempts: int, max_attempts: int) -> None:
    out = on_worker_crash(crashes=3, alone=True, attempts=attempts, max_attempts=max_attempts)
    assert out == Outcome(RunStatus.FAILED, attempts, None)


def test_a_run_that_keeps_crashing_alone_uses_up_its_attempts() -> None:
    attempts, max_attempts = 1, 3
    statuses = []
    for crash in range(1, 10):
        out = on_worker_crash(crashes=crash, alone=True, attempts=attempts, max_attempts=3)
        statuses.append(out.status)
        if out.status != RunStatus.PENDING:
            break
        attempts = out.attempts
    assert statuses == [RunStatus.PENDING, RunStatus.PENDING, RunStatus.FAILED]
    assert attempts == max_attempts
