"""A run's life cycle through the storage seam: create, claim, checkpoints, sleeps,
finishing, cancelling, retrying, crashes, recovery, pruning, and the run views."""

from __future__ import annotations

import json

import msgspec
import pytest

from tako._errors import NotAllowed, RunNotFound, StaleClaim
from tako._protocol import Assign
from tako._records import iso
from tako.takod.rules.runs import Outcome, RunStatus
from tako.takod.storage import Backend
from tako.takod.storage.interface import Created, Parked, ParkOutcome, Requeued, StepSaved
from tests.storage.kit import (
    DAY,
    NOW,
    cancel,
    claim,
    counts,
    create,
    done,
    finish,
    finish_msg,
    next_wake,
    park,
    park_msg,
    raw,
    ready,
    recover,
    retry,
    run,
    save,
    signal,
    sleep,
    start,
    started,
    status,
    steps,
    take,
    wait_on,
    wake_due,
)

# -- create_run ----------------------------------------------------------------------------


async def test_create_run_inserts_a_pending_run(backend: Backend) -> None:
    created = await create(backend, workflow="wf", payload=b'{"a": 1}', max_attempts=4)
    rid = created.run_id
    assert (created.status, created.deduplicated) == ("pending", False)
    assert rid.startswith("r_")
    view = await run(backend, rid)
    assert view.run_id == rid
    assert view.workflow == "wf"
    assert view.status == "pending"
    assert raw(view.payload) == b'{"a": 1}'
    assert raw(view.result) == b"null"  # null: no result (yet)
    assert (view.attempts, view.max_attempts) == (1, 4)
    assert view.created_at == view.updated_at == iso(NOW) == "2027-01-15T08:00:00.000Z"
    assert (view.wake_at, view.error, view.cancel_requested) == (None, None, False)
    assert view.steps == []
    assert await ready(backend) == [rid]


async def test_generated_run_ids_sort_by_creation_time(backend: Backend) -> None:
    ids = [await start(backend, now=NOW + offset) for offset in (0, 1, 1000, DAY, 365 * DAY)]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


async def test_starting_an_existing_id_returns_the_existing_run(backend: Backend) -> None:
    rid = await start(backend, "order-42", payload=b'"first"')
    again = await create(
        backend, "order-42", workflow="other", payload=b'"second"', max_attempts=1, now=NOW + 10
    )
    assert again == Created("order-42", "pending", True)
    await claim(backend, rid)
    again = await create(backend, rid, workflow="wf", payload=b"2", max_attempts=1)
    assert again == Created("order-42", "running", True)
    view = await run(backend, rid)
    assert raw(view.payload) == b'"first"'  # nothing was overwritten
    assert (view.workflow, view.max_attempts, view.created_at) == ("fulfill-order", 3, iso(NOW))
    assert await counts(backend) == {"running": 1}


async def test_a_delayed_run_is_not_ready_before_its_time(backend: Backend) -> None:
    rid = await start(backend, delay_ms=5000)
    view = await run(backend, rid)
    assert (view.status, view.wake_at) == ("pending", iso(NOW + 5000))
    assert await ready(backend, NOW + 4999) == []
    assert await backend.write(lambda tx: tx.claim([rid], NOW)) == []
    assert await backend.write(lambda tx: tx.claim([rid], NOW + 4999)) == []
    assert await next_wake(backend) == NOW + 5000
    assert await ready(backend, NOW + 5000) == [rid]
    a = await claim(backend, rid, NOW + 5000)
    assert a.token == 1
    assert (await run(backend, rid)).wake_at is None


async def test_ready_runs_are_oldest_first_and_limited(backend: Backend) -> None:
    ids = [await start(backend, now=NOW + n) for n in (3, 1, 2)]
    oldest = [ids[1], ids[2], ids[0]]
    assert await ready(backend, NOW + 10) == oldest
    assert await backend.write(lambda tx: tx.ready_runs(NOW + 10, limit=2)) == oldest[:2]


# -- claim -----------------------------------------------------------------------------------


async def test_claim_assigns_a_run_with_a_new_token(backend: Backend) -> None:
    rid = await start(backend, payload=b'{"order": 7}')
    [a] = await backend.write(lambda tx: tx.claim([rid, "no-such-run"], NOW + 1))
    assert (a.run_id, a.workflow, a.attempt, a.token, a.memo) == (
        rid,
        "fulfill-order",
        1,
        1,
        [],
    )
    assert bytes(a.payload) == b'{"order": 7}'
    view = await run(backend, rid)
    assert (view.status, view.updated_at) == ("running", iso(NOW + 1))
    # a claimed run is not claimed a second time
    assert await backend.write(lambda tx: tx.claim([rid], NOW + 2)) == []
    assert await ready(backend, NOW + 2) == []


async def test_claim_again_after_requeue_increments_the_token(backend: Backend) -> None:
    a = await started(backend)
    await recover(backend)
    b = await claim(backend, a.run_id)
    assert b.token > a.token
    await backend.write(
        lambda tx: tx.requeue_lost([b.run_id], alone=False, reason="killed", now=NOW)
    )
    c = await claim(backend, a.run_id)
    assert c.token > b.token


async def test_claim_carries_the_memo_of_finished_steps(backend: Backend) -> None:
    a = await started(backend)
    await save(backend, done(a, "load", b'{"total": 120}'))
    await save(backend, done(a, "charge", b"null", status="failed", error="E: x"))
    await save(backend, done(a, "load#2", b"[1, 2]", attempts=3))
    await backend.write(
        lambda tx: tx.requeue_lost([a.run_id], alone=False, reason="killed", now=NOW)
    )
    b = await claim(backend, a.run_id)
    memo = {m.key: (m.status, bytes(m.result), m.error, m.attempts) for m in b.memo}
    assert memo == {
        "load": ("completed", b'{"total": 120}', None, 1),
        "charge": ("failed", b"null", "E: x", 1),
        "load#2": ("completed", b"[1, 2]", None, 3),
    }


async def test_claim_holds_back_runs_whose_workflow_cannot_start(backend: Backend) -> None:
    held = await start(backend, workflow="broken")
    fine = await start(backend, workflow="fulfill-order")

    def hold(workflow: str) -> str | None:
        return "broken.py does not load" if workflow == "broken" else None

    assigns = await backend.write(lambda tx: tx.claim([held, fine], NOW + 1, hold))
    assert [a.run_id for a in assigns] == [fine]
    view = await run(backend, held)
    assert (view.status, view.error) == ("pending", "broken.py does not load")
    # once it loads, the run starts, and the reason it waited is gone
    [a] = await backend.write(lambda tx: tx.claim([held], NOW + 2, lambda _: None))
    assert a.run_id == held
    view = await run(backend, held)
    assert (view.status, view.error) == ("running", None)


# -- save_step ----------------------------------------------------------------------------------


async def test_save_step_checkpoints_in_order(backend: Backend) -> None:
    a = await started(backend)
    for key in ("b-step", "a-step", "b-step#2"):
        assert await save(backend, done(a, key, b'"ok"'), NOW + 10) == StepSaved.SAVED
    got = await steps(backend, a.run_id)
    assert [s.key for s in got] == ["b-step", "a-step", "b-step#2"]
    first = got[0]
    assert (first.name, first.kind, first.status) == ("b-step", "run", "completed")
    assert raw(first.result) == b'"ok"'
    assert (first.error, first.attempts) == (None, 1)
    assert (first.started_at, first.finished_at) == (iso(NOW), iso(NOW + 5))
    assert await status(backend, a.run_id) == "running"


async def test_save_step_again_replaces_the_step(backend: Backend) -> None:
    a = await started(backend)
    await save(backend, done(a, "charge", status="failed", error="E", attempts=1))
    await save(backend, done(a, "charge", b'"paid"', attempts=2))
    [only] = await steps(backend, a.run_id)
    assert (only.key, only.status, raw(only.result), only.error, only.attempts) == (
        "charge",
        "completed",
        b'"paid"',
        None,
        2,
    )


async def test_save_step_with_a_stale_token_is_refused(backend: Backend) -> None:
    a = await started(backend)
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "x", token=a.token + 1))
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "x", token=a.token - 1))
    await recover(backend)  # a new supervisor: the old worker's token is stale
    await claim(backend, a.run_id)
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "x"))
    assert await steps(backend, a.run_id) == []


async def test_save_step_for_an_unknown_or_unclaimed_run_is_refused(backend: Backend) -> None:
    rid = await start(backend)
    fake = Assign(rid, "fulfill-order", msgspec.Raw(b"null"), 1, 0, [])
    with pytest.raises(StaleClaim):
        await save(backend, done(fake, "x"))  # pending, never claimed
    ghost = Assign("ghost", "fulfill-order", msgspec.Raw(b"null"), 1, 1, [])
    with pytest.raises(StaleClaim):
        await save(backend, done(ghost, "x"))
    assert await steps(backend, rid) == []
    with pytest.raises(RunNotFound):
        await run(backend, "ghost")


async def test_save_step_with_release_gives_the_run_back(backend: Backend) -> None:
    """The supervisor is stopping: the step is kept, the run goes back to the queue
    uncharged, and its worker no longer holds it."""
    a = await started(backend)
    assert await save(backend, done(a, "load", b"7"), release=True) == StepSaved.RELEASED
    view = await run(backend, a.run_id)
    assert (view.status, view.attempts) == ("pending", 1)
    assert [(s.key, raw(s.result)) for s in view.steps or []] == [("load", b"7")]
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "after"))
    b = await claim(backend, a.run_id)
    assert (b.attempt, [m.key for m in b.memo]) == (1, ["load"])
    assert b.token > a.token


async def test_release_gives_a_held_run_back_uncharged(backend: Backend) -> None:
    a = await started(backend)
    await backend.write(lambda tx: tx.release(a.run_id, a.token + 1, NOW))  # not its holder
    assert await status(backend, a.run_id) == "running"
    await backend.write(lambda tx: tx.release(a.run_id, a.token, NOW))
    view = await run(backend, a.run_id)
    assert (view.status, view.attempts) == ("pending", 1)
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "late"))


# -- park: sleep --------------------------------------------------------------------------------


async def test_park_sleep_parks_the_run(backend: Backend) -> None:
    a = await started(backend)
    parked = await park(backend, park_msg(a, "cool-down", "sleep", wake_at=NOW + 600_000))
    assert parked == Parked(ParkOutcome.PARKED)
    view = await run(backend, a.run_id)
    assert (view.status, view.wake_at) == ("sleeping", iso(NOW + 600_000))
    [s] = view.steps or []
    assert (s.key, s.kind, s.status, s.finished_at) == ("cool-down", "sleep", "sleeping", None)
    assert s.wake_at == iso(NOW + 600_000)
    assert await next_wake(backend) == NOW + 600_000
    assert await backend.write(lambda tx: tx.claim([a.run_id], NOW + 1)) == []
    with pytest.raises(StaleClaim):  # the worker let go of it
        await save(backend, done(a, "after"))


async def test_a_sleep_already_due_returns_null_without_parking(backend: Backend) -> None:
    a = await started(backend)
    for key, wake_at in (("past", NOW - 1), ("now", NOW)):
        got = await park(backend, park_msg(a, key, "sleep", wake_at=wake_at))
        assert got == Parked(ParkOutcome.GO_ON, b"null")
    view = await run(backend, a.run_id)
    assert (view.status, view.wake_at) == ("running", None)
    assert [(s.key, s.status) for s in view.steps or []] == [
        ("past", "completed"),
        ("now", "completed"),
    ]
    assert await save(backend, done(a, "next")) == StepSaved.SAVED  # still held


async def test_park_with_a_stale_token_is_refused(backend: Backend) -> None:
    a = await started(backend)
    await recover(backend)
    with pytest.raises(StaleClaim):
        await park(backend, park_msg(a, "s", "sleep", wake_at=NOW + 1000))
    assert await status(backend, a.run_id) == "pending"
    assert await steps(backend, a.run_id) == []


# -- the timer: sleeps, backoffs, deadlines -------------------------------------------------


async def test_wake_due_ends_a_sleep(backend: Backend) -> None:
    a = await started(backend)
    await sleep(backend, a, "nap", NOW + 10_000)
    assert await wake_due(backend, NOW + 9_999) == ([], [])
    assert await status(backend, a.run_id) == "sleeping"
    assert await wake_due(backend, NOW + 10_000) == ([a.run_id], [])
    view = await run(backend, a.run_id)
    assert (view.status, view.wake_at) == ("pending", None)
    [s] = view.steps or []
    assert (s.status, raw(s.result), s.finished_at) == ("completed", b"null", iso(NOW + 10_000))
    assert await next_wake(backend) is None
    assert await wake_due(backend, NOW + 20_000) == ([], [])  # fires once
    b = await claim(backend, a.run_id, NOW + 10_000)
    assert [(m.key, m.status) for m in b.memo] == [("nap", "completed")]


async def test_wake_due_wakes_a_crowd_in_batches_earliest_first(backend: Backend) -> None:
    sleepers = [await started(backend) for _ in range(5)]
    for i, a in enumerate(sleepers):
        await sleep(backend, a, "nap", NOW + 100 - i)
    order = [a.run_id for a in reversed(sleepers)]  # the last one is due first
    assert await wake_due(backend, NOW + 100, limit=2) == (order[:2], [])
    assert await wake_due(backend, NOW + 100, limit=2) == (order[2:4], [])
    assert await next_wake(backend) == NOW + 100  # the scheduler calls again at once
    assert await wake_due(backend, NOW + 100, limit=2) == (order[4:], [])
    assert await next_wake(backend) is None
    assert {await status(backend, rid) for rid in order} == {"pending"}


async def test_wake_due_moves_a_retry_backoff_on_and_keeps_the_step_attempts(
    backend: Backend,
) -> None:
    a = await started(backend)
    msg = park_msg(a, "charge", "retry", wake_at=NOW + 2000, attempts=1, error="IOError: down")
    assert await park(backend, msg) == Parked(ParkOutcome.PARKED)
    view = await run(backend, a.run_id)
    assert view.status == "sleeping"
    [s] = view.steps or []
    assert (s.kind, s.status, s.error) == ("run", "running", "IOError: down")
    assert await wake_due(backend, NOW + 2000) == ([a.run_id], [])
    b = await claim(backend, a.run_id, NOW + 2000)
    [m] = b.memo
    assert (m.key, m.status, m.error, m.attempts) == ("charge", "running", "IOError: down", 1)


async def test_wake_due_readies_a_retry_of_the_whole_run(backend: Backend) -> None:
    a = await started(backend)
    out = await finish(backend, finish_msg(a, "failed", error="E"))
    assert out.wake_at is not None
    assert await next_wake(backend) == out.wake_at
    assert await wake_due(backend, out.wake_at - 1) == ([], [])
    assert await wake_due(backend, out.wake_at) == ([a.run_id], [])
    assert (await run(backend, a.run_id)).wake_at is None


async def test_wake_due_fails_a_run_past_its_deadline(backend: Backend) -> None:
    running = await started(backend, timeout_ms=60_000)
    sleeping = await started(backend, timeout_ms=60_000)
    await sleep(backend, sleeping, "nap", NOW + DAY)
    pending = await start(backend, timeout_ms=120_000)
    assert await next_wake(backend) == NOW + 60_000
    assert await wake_due(backend, NOW + 59_999) == ([], [])
    woken, expired = await wake_due(backend, NOW + 60_000)
    assert woken == []
    assert sorted(expired) == sorted([(running.run_id, "timeout"), (sleeping.run_id, "timeout")])
    for rid in (running.run_id, sleeping.run_id):
        view = await run(backend, rid)
        assert (view.status, view.error, view.wake_at) == ("failed", "timeout", None)
    assert await status(backend, pending) == "pending"
    assert await next_wake(backend) == NOW + 120_000
    with pytest.raises(StaleClaim):  # the worker still running it is fenced off
        await save(backend, done(running, "late"), NOW + 60_001)
    assert await wake_due(backend, NOW + 120_000) == ([], [(pending, "timeout")])


async def test_next_wake_is_the_earliest_of_wake_ups_and_deadlines(backend: Backend) -> None:
    assert await next_wake(backend) is None
    await start(backend, delay_ms=50_000)
    await start(backend, timeout_ms=70_000)
    a = await started(backend)
    await sleep(backend, a, "nap", NOW + 30_000)
    assert await next_wake(backend) == NOW + 30_000
    await start(backend, timeout_ms=20_000)
    assert await next_wake(backend) == NOW + 20_000


# -- finish ---------------------------------------------------------------------------------


async def test_finish_completed_stores_the_result(backend: Backend) -> None:
    a = await started(backend, timeout_ms=DAY)
    await save(backend, done(a, "s"))
    out = await finish(backend, finish_msg(a, "completed", b'{"shipped": 42}'), NOW + 100)
    assert out == Outcome(RunStatus.COMPLETED, 1, None)
    view = await run(backend, a.run_id)
    assert view.status == "completed"
    assert raw(view.result) == b'{"shipped": 42}'
    assert (view.error, view.wake_at, view.updated_at) == (None, None, iso(NOW + 100))
    assert await next_wake(backend) is None  # its deadline no longer counts
    assert await backend.write(lambda tx: tx.claim([a.run_id], NOW + DAY)) == []
    with pytest.raises(StaleClaim):
        await finish(backend, finish_msg(a, "completed"))


async def test_finish_failed_with_attempts_left_is_retried_later(backend: Backend) -> None:
    a = await started(backend, max_attempts=3)
    await save(backend, done(a, "load", b"7"))
    await save(backend, done(a, "charge", status="failed", error="E"))
    out = await finish(
        backend, finish_msg(a, "failed", error="ValueError: bad", traceback="Traceback ...")
    )
    assert (out.status, out.attempts) == (RunStatus.PENDING, 2)
    assert out.wake_at is not None
    assert NOW + 800 <= out.wake_at <= NOW + 1200  # 1 s ± 20 % after the first attempt
    view = await run(backend, a.run_id)
    assert (view.status, view.attempts, view.wake_at) == ("pending", 2, iso(out.wake_at))
    assert (view.error, view.traceback) == ("ValueError: bad", "Traceback ...")
    assert [s.key for s in view.steps or []] == ["load"]  # the failed step runs again
    due = out.wake_at
    assert await backend.write(lambda tx: tx.claim([a.run_id], due - 1)) == []
    b = await claim(backend, a.run_id, due)
    assert b.attempt == 2
    assert [m.key for m in b.memo] == ["load"]
    # the error of the last attempt stays visible while the next one runs
    assert (await run(backend, a.run_id)).error == "ValueError: bad"
    # second attempt: 2 s ± 20 %
    out2 = await finish(backend, finish_msg(b, "failed", error="again"), NOW + 5000)
    assert out2.wake_at is not None
    assert NOW + 5000 + 1600 <= out2.wake_at <= NOW + 5000 + 2400


async def test_finish_failed_on_the_last_attempt_fails_the_run(backend: Backend) -> None:
    a = await started(backend, max_attempts=1)
    msg = finish_msg(a, "failed", error="KeyError: 'x'", traceback="TB")
    assert await finish(backend, msg) == Outcome(RunStatus.FAILED, 1, None)
    view = await run(backend, a.run_id)
    assert (view.status, view.error, view.traceback) == ("failed", "KeyError: 'x'", "TB")
    assert raw(view.result) == b"null"  # null: no result (yet)
    assert await next_wake(backend) is None


async def test_finish_fatal_fails_at_once(backend: Backend) -> None:
    a = await started(backend, max_attempts=5)
    out = await finish(backend, finish_msg(a, "fatal", error="NonRetryable: no"))
    assert out == Outcome(RunStatus.FAILED, 1, None)
    view = await run(backend, a.run_id)
    assert (view.status, view.error) == ("failed", "NonRetryable: no")


async def test_finish_cancelled_by_bail(backend: Backend) -> None:
    a = await started(backend, max_attempts=5)
    out = await finish(backend, finish_msg(a, "cancelled", error="rejected by u-7"))
    assert out.status == RunStatus.CANCELLED
    view = await run(backend, a.run_id)
    assert (view.status, view.error) == ("cancelled", "rejected by u-7")


# -- cancel -----------------------------------------------------------------------------------


async def test_cancel_a_pending_run(backend: Backend) -> None:
    rid = await start(backend, delay_ms=10_000)
    assert await cancel(backend, rid, None, NOW + 1) == "cancelled"
    view = await run(backend, rid)
    assert (view.status, view.error, view.wake_at) == ("cancelled", "cancelled", None)
    assert await next_wake(backend) is None
    assert await backend.write(lambda tx: tx.claim([rid], NOW + 10_000)) == []


async def test_cancel_parked_runs(backend: Backend) -> None:
    sleeper, waiter = await started(backend), await started(backend)
    await sleep(backend, sleeper, "nap", NOW + 1000)
    await wait_on(backend, waiter, "go", timeout_at=NOW + 2000)
    assert await cancel(backend, sleeper.run_id, "no longer needed") == "cancelled"
    assert await cancel(backend, waiter.run_id) == "cancelled"
    assert (await run(backend, sleeper.run_id)).error == "no longer needed"
    assert await wake_due(backend, NOW + 5000) == ([], [])
    assert await signal(backend, "go", b"1") == ([], True)  # the cancelled run no longer waits
    assert await status(backend, waiter.run_id) == "cancelled"


async def test_cancel_a_running_run_stops_it_at_its_next_step(backend: Backend) -> None:
    a = await started(backend)
    assert await cancel(backend, a.run_id, "operator said so") == "running"
    view = await run(backend, a.run_id)
    assert (view.status, view.cancel_requested) == ("running", True)
    assert await save(backend, done(a, "step-1", b'"done"'), NOW + 1) == StepSaved.CANCELLED
    view = await run(backend, a.run_id)
    assert (view.status, view.error, view.cancel_requested) == (
        "cancelled",
        "operator said so",
        False,
    )
    assert [raw(s.result) for s in view.steps or []] == [b'"done"']  # the step that ran is kept
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "step-2"), NOW + 2)


async def test_cancel_a_finished_run_is_not_allowed(backend: Backend) -> None:
    a = await started(backend)
    await finish(backend, finish_msg(a, "completed", b"1"))
    with pytest.raises(NotAllowed, match="completed"):
        await cancel(backend, a.run_id)
    rid = await start(backend)
    await cancel(backend, rid)
    with pytest.raises(NotAllowed):
        await cancel(backend, rid)
    with pytest.raises(RunNotFound):
        await cancel(backend, "nope")
    assert await status(backend, a.run_id) == "completed"


async def test_cancel_requested_run_that_parks_ends_cancelled(backend: Backend) -> None:
    a = await started(backend)
    await cancel(backend, a.run_id, "stop")
    got = await park(backend, park_msg(a, "nap", "sleep", wake_at=NOW + 1000))
    assert got == Parked(ParkOutcome.CANCELLED)
    view = await run(backend, a.run_id)
    assert (view.status, view.error, view.wake_at) == ("cancelled", "stop", None)
    assert await next_wake(backend) is None


async def test_cancel_requested_run_that_fails_is_not_retried(backend: Backend) -> None:
    a = await started(backend, max_attempts=3)
    await cancel(backend, a.run_id, "stop")
    out = await finish(backend, finish_msg(a, "failed", error="ValueError: x"), NOW + 1)
    assert out.status == RunStatus.CANCELLED
    view = await run(backend, a.run_id)
    assert (view.status, view.error) == ("cancelled", "stop")


async def test_cancel_requested_run_that_completes_completes(backend: Backend) -> None:
    """A handler that returned before its next step boundary: the result stands."""
    a = await started(backend)
    await cancel(backend, a.run_id, "stop")
    out = await finish(backend, finish_msg(a, "completed", b'"made it"'))
    assert out.status == RunStatus.COMPLETED
    view = await run(backend, a.run_id)
    assert (view.status, raw(view.result)) == ("completed", b'"made it"')


# -- retry ------------------------------------------------------------------------------------


async def test_retry_a_failed_run_keeps_its_finished_steps(backend: Backend) -> None:
    a = await started(backend, max_attempts=1)
    await save(backend, done(a, "load", b'"order"'))
    await save(backend, done(a, "charge", status="failed", error="E"))
    await finish(backend, finish_msg(a, "failed", error="StepFailed", traceback="TB"))
    assert await status(backend, a.run_id) == "failed"
    await retry(backend, a.run_id, NOW + 10)
    view = await run(backend, a.run_id)
    assert (view.status, view.attempts, view.error, view.traceback) == ("pending", 1, None, None)
    assert [s.key for s in view.steps or []] == ["load"]
    assert await ready(backend, NOW + 10) == [a.run_id]
    b = await claim(backend, a.run_id, NOW + 10)
    assert b.token > a.token
    assert [(m.key, m.status, bytes(m.result)) for m in b.memo] == [
        ("load", "completed", b'"order"')
    ]


async def test_retry_a_cancelled_run(backend: Backend) -> None:
    a = await started(backend)
    await wait_on(backend, a, "go")
    await cancel(backend, a.run_id)
    await retry(backend, a.run_id)
    assert await status(backend, a.run_id) == "pending"
    assert await steps(backend, a.run_id) == []  # the unfinished wait is dropped
    b = await claim(backend, a.run_id)
    assert b.memo == []
    # nor is it waiting any more: a signal finds nobody
    assert await signal(backend, "go") == ([], True)


async def test_retry_with_a_timeout_sets_a_new_deadline(backend: Backend) -> None:
    a = await started(backend, timeout_ms=1000)
    assert (await wake_due(backend, NOW + 1000)).failed == [(a.run_id, "timeout")]
    await retry(backend, a.run_id, NOW + 5000, timeout_ms=2000)
    assert await next_wake(backend) == NOW + 7000
    assert await wake_due(backend, NOW + 7000) == ([], [(a.run_id, "timeout")])


async def test_retry_without_a_timeout_has_no_deadline(backend: Backend) -> None:
    rid = await start(backend, timeout_ms=1000)
    await cancel(backend, rid)
    await retry(backend, rid, NOW)
    assert await next_wake(backend) is None
    assert await wake_due(backend, NOW + DAY) == ([], [])
    assert await status(backend, rid) == "pending"


@pytest.mark.parametrize("state", ["pending", "running", "completed"])
async def test_retry_is_only_for_failed_or_cancelled_runs(backend: Backend, state: str) -> None:
    rid = await start(backend)
    if state != "pending":
        a = await claim(backend, rid)
        if state == "completed":
            await finish(backend, finish_msg(a, "completed"))
    with pytest.raises(NotAllowed, match=state):
        await retry(backend, rid)
    assert await status(backend, rid) == state


async def test_retry_an_unknown_run(backend: Backend) -> None:
    with pytest.raises(RunNotFound):
        await retry(backend, "nope")


# -- crashes and recovery ---------------------------------------------------------------------


async def test_crashed_not_alone_requeues_without_charge(backend: Backend) -> None:
    a, b = await started(backend), await started(backend)
    idle = await start(backend)
    out = await backend.write(
        lambda tx: tx.requeue_lost(
            [a.run_id, b.run_id, idle], alone=False, reason="SIGKILL", now=NOW
        )
    )
    assert sorted(out.requeued) == sorted([a.run_id, b.run_id])  # the pending run is left alone
    assert out.failed == []
    for x in (a, b):
        view = await run(backend, x.run_id)
        assert (view.status, view.attempts) == ("pending", 1)
        with pytest.raises(StaleClaim):
            await save(backend, done(x, "late"))
    assert (await claim(backend, a.run_id)).attempt == 1


async def test_crashed_alone_is_charged_an_attempt(backend: Backend) -> None:
    a = await started(backend, max_attempts=3)
    out = await backend.write(
        lambda tx: tx.requeue_lost([a.run_id], alone=True, reason="oom", now=NOW)
    )
    assert out == Requeued([a.run_id], [])
    view = await run(backend, a.run_id)
    assert (view.status, view.attempts) == ("pending", 2)
    assert (await claim(backend, a.run_id)).attempt == 2


async def test_crashed_alone_on_the_last_attempt_fails(backend: Backend) -> None:
    a = await started(backend, max_attempts=2)
    reason = "killed by SIGKILL"
    await backend.write(lambda tx: tx.requeue_lost([a.run_id], alone=True, reason=reason, now=NOW))
    b = await claim(backend, a.run_id)
    out = await backend.write(
        lambda tx: tx.requeue_lost([b.run_id], alone=True, reason=reason, now=NOW)
    )
    assert out == Requeued([], [a.run_id])
    view = await run(backend, a.run_id)
    assert (view.status, view.attempts, view.error) == ("failed", 2, "killed by SIGKILL")


async def test_recover_requeues_running_runs_only(backend: Backend) -> None:
    a = await started(backend)
    sleeper = await started(backend)
    await sleep(backend, sleeper, "nap", NOW + 1000)
    finished = await started(backend)
    await finish(backend, finish_msg(finished, "completed"))
    await recover(backend, NOW + 5)
    assert await status(backend, a.run_id) == "pending"
    assert await status(backend, sleeper.run_id) == "sleeping"
    assert await status(backend, finished.run_id) == "completed"
    assert await ready(backend, NOW + 5) == [a.run_id]
    with pytest.raises(StaleClaim):
        await save(backend, done(a, "late"))


# -- prune --------------------------------------------------------------------------------------


async def test_prune_deletes_old_finished_runs_with_their_steps(backend: Backend) -> None:
    old = await started(backend, "old-run")
    await save(backend, done(old, "s", b'"from the old run"'))
    await finish(backend, finish_msg(old, "completed"))
    recent = await started(backend)
    await finish(backend, finish_msg(recent, "fatal", error="E"), NOW + DAY)
    pending = await start(backend)
    await signal(backend, "stale", b"1", ttl_ms=1000)
    await signal(backend, "fresh", b"2", ttl_ms=10 * DAY)
    assert await backend.write(lambda tx: tx.prune(NOW + 2000)) == 1
    with pytest.raises(RunNotFound):
        await run(backend, old.run_id)
    assert await status(backend, recent.run_id) == "failed"
    assert await status(backend, pending) == "pending"
    assert await backend.write(lambda tx: tx.prune(NOW + 2000)) == 0
    # a new run under the old id starts afresh: none of the old steps are replayed
    again = await started(backend, "old-run")
    assert again.memo == []
    # the expired signal went, the other one is still there (both looked for before
    # the first would have expired)
    waiter = await started(backend)
    assert await take(backend, waiter, "stale") == Parked(ParkOutcome.PARKED)
    other = await started(backend)
    assert await take(backend, other, "fresh") == Parked(ParkOutcome.GO_ON, b"2")


# -- reading ------------------------------------------------------------------------------------


SPEC_RUN_KEYS = {
    "run_id",
    "workflow",
    "status",
    "payload",
    "result",
    "error",
    "traceback",
    "attempts",
    "created_at",
    "updated_at",
    "wake_at",
    "waiting_for",
    "steps",
}
SPEC_STEP_KEYS = {
    "key",
    "name",
    "kind",
    "status",
    "result",
    "error",
    "attempts",
    "started_at",
    "finished_at",
}


async def test_read_run_has_the_spec_shape(backend: Backend) -> None:
    a = await started(backend)
    await save(backend, done(a, "s"))
    view = await run(backend, a.run_id)
    encoded = json.loads(msgspec.json.encode(view))  # the run object goes on the wire as is
    assert set(encoded) >= SPEC_RUN_KEYS
    assert set(encoded["steps"][0]) >= SPEC_STEP_KEYS
    assert encoded["payload"] == {"order": 42}
    assert encoded["result"] is None
    brief = await run(backend, a.run_id, with_steps=False)
    assert brief.steps is msgspec.UNSET
    assert "steps" not in json.loads(msgspec.json.encode(brief))
    with pytest.raises(RunNotFound):
        await run(backend, "nope")


async def test_read_runs_newest_first_with_filters(backend: Backend) -> None:
    ids = [await start(backend, workflow="a" if n % 2 else "b", now=NOW + n) for n in range(6)]
    await claim(backend, ids[0])
    await claim(backend, ids[3])

    async def listed(status: str | None, workflow: str | None, limit: int = 100) -> list[str]:
        views = await backend.read(lambda r: r.runs(status=status, workflow=workflow, limit=limit))
        assert all(v.steps is msgspec.UNSET for v in views)
        return [v.run_id for v in views]

    assert await listed(None, None) == ids[::-1]
    assert await listed(None, None, limit=2) == [ids[5], ids[4]]
    assert await listed("running", None) == [ids[3], ids[0]]
    assert await listed(None, "a") == [ids[5], ids[3], ids[1]]
    assert await listed("pending", "b") == [ids[4], ids[2]]
    assert await listed("failed", None) == []


async def test_read_counts(backend: Backend) -> None:
    assert await counts(backend) == {}
    for _ in range(3):
        await start(backend)
    a = await started(backend)
    b = await started(backend)
    await finish(backend, finish_msg(b, "completed"))
    await wait_on(backend, a, "go")
    assert await counts(backend) == {"pending": 3, "waiting": 1, "completed": 1}
