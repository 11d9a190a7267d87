"""The pure run-state rules (takod.rules.runs): retries with backoff, crash attribution,
what a park becomes, who may be cancelled or retried."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tako._errors import NotAllowed
from tako.takod.rules.runs import (
    CANCELLABLE,
    FINISHED,
    NULL,
    PARKED,
    RETRYABLE,
    Outcome,
    Parking,
    RunStatus,
    check_retry,
    on_cancel,
    on_handler_end,
    on_park,
    on_worker_crash,
)

NOW = 1_800_000_000_000


# -- the status sets ---------------------------------------------------------


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
    # the decision reads `alone` only (the pool tells a poison run from its neighbours)
    out = on_worker_crash(alone=False, attempts=attempts, max_attempts=max_attempts)
    assert out == Outcome(RunStatus.PENDING, attempts, None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(1, 4), (3, 4), (1, 2)])
def test_crash_alone_is_charged_an_attempt(attempts: int, max_attempts: int) -> None:
    out = on_worker_crash(alone=True, attempts=attempts, max_attempts=max_attempts)
    assert out == Outcome(RunStatus.PENDING, attempts + 1, None)


@pytest.mark.parametrize(("attempts", "max_attempts"), [(4, 4), (1, 1)])
def test_crash_alone_on_the_last_attempt_fails(attempts: int, max_attempts: int) -> None:
    out = on_worker_crash(alone=True, attempts=attempts, max_attempts=max_attempts)
    assert out == Outcome(RunStatus.FAILED, attempts, None)


def test_a_run_that_keeps_crashing_alone_uses_up_its_attempts() -> None:
    attempts, max_attempts = 1, 3
    statuses = []
    for _ in range(10):
        out = on_worker_crash(alone=True, attempts=attempts, max_attempts=max_attempts)
        statuses.append(out.status)
        if out.status != RunStatus.PENDING:
            break
        attempts = out.attempts
    assert statuses == [RunStatus.PENDING, RunStatus.PENDING, RunStatus.FAILED]
    assert attempts == max_attempts


# -- on_park ----------------------------------------------------------------------------------


def test_a_sleep_in_the_future_parks_the_run_sleeping() -> None:
    assert on_park("sleep", now=NOW, wake_at=NOW + 1) == Parking(
        RunStatus.SLEEPING, "sleeping", None, NOW + 1
    )


@pytest.mark.parametrize("offset", [0, -1, -86_400_000])
def test_a_sleep_already_due_completes_at_once_with_null(offset: int) -> None:
    plan = on_park("sleep", now=NOW, wake_at=NOW + offset)
    assert plan == Parking(None, "completed", NULL, NOW + offset)
    assert plan.result == b"null"


def test_a_retry_backoff_parks_the_run_with_its_step_still_running() -> None:
    # even when already due: the timer, not the park, moves a backoff on
    for wake_at in (NOW + 2000, NOW):
        assert on_park("retry", now=NOW, wake_at=wake_at) == Parking(
            RunStatus.SLEEPING, "running", None, wake_at
        )


@pytest.mark.parametrize("kind", ["sleep", "retry"])
def test_a_sleep_or_backoff_needs_a_due_time(kind: str) -> None:
    with pytest.raises(AssertionError, match="needs a due time"):
        on_park(kind, now=NOW)


@pytest.mark.parametrize("timeout", [None, NOW + 5000])
def test_a_wait_with_nothing_found_waits(timeout: int | None) -> None:
    plan = on_park("wait", now=NOW, wake_at=timeout, waiting_for="go")
    assert plan == Parking(RunStatus.WAITING, "waiting", None, timeout, "go")


def test_an_approval_with_nothing_found_waits_for_its_request() -> None:
    plan = on_park("approval", now=NOW, waiting_for="approval:r-1:manager")
    assert plan == Parking(RunStatus.WAITING, "waiting", None, None, "approval:r-1:manager")


@pytest.mark.parametrize("kind", ["wait", "approval"])
def test_what_already_answers_a_wait_completes_it_at_once(kind: str) -> None:
    """A kept signal the wait consumed, a decision made while the run was away: the run
    does not park, even with a timeout still ahead."""
    plan = on_park(kind, now=NOW, wake_at=NOW + 5000, found=b'{"ok": true}', waiting_for="go")
    assert plan == Parking(None, "completed", b'{"ok": true}')
    # a found `null` is an answer too, not "nothing found"
    assert on_park(kind, now=NOW, found=b"null").run_status is None


# -- on_cancel and check_retry ------------------------------------------------------------------


def test_a_running_run_is_asked_to_stop_and_stays_running() -> None:
    assert on_cancel("r-1", RunStatus.RUNNING) == RunStatus.RUNNING


@pytest.mark.parametrize("status", [RunStatus.PENDING, RunStatus.SLEEPING, RunStatus.WAITING])
def test_a_run_not_running_is_cancelled_now(status: RunStatus) -> None:
    assert on_cancel("r-1", status) == RunStatus.CANCELLED


@pytest.mark.parametrize("status", sorted(FINISHED))
def test_a_finished_run_cannot_be_cancelled(status: RunStatus) -> None:
    with pytest.raises(NotAllowed, match=f"run r-1 is {status}; only unfinished runs"):
        on_cancel("r-1", status)


@pytest.mark.parametrize("status", sorted(RETRYABLE))
def test_a_failed_or_cancelled_run_may_be_retried(status: RunStatus) -> None:
    check_retry("r-1", status)  # raises NotAllowed when it may not


@pytest.mark.parametrize("status", sorted(set(RunStatus) - RETRYABLE))
def test_any_other_run_may_not_be_retried(status: RunStatus) -> None:
    with pytest.raises(NotAllowed, match=f"run r-1 is {status}; only failed or cancelled"):
        check_retry("r-1", status)
