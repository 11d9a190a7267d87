"""Approval requests through the storage seam: the decision rules as stored, timers,
the requests' life with their run, and the outbox of approval events.

Each request is created the way takod creates one: a claimed run parks on
`step.approval(...)`, which stores the request and leaves the run waiting.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from tako._errors import ApprovalNotFound, InvalidRequest, NotAllowed, Stale
from tako._protocol import ApprovalSpec
from tako._records import iso
from tako.takod.rules.approvals import digest
from tako.takod.storage import Backend
from tako.takod.storage.interface import LinkFields, Parked, ParkOutcome
from tests.storage.kit import (
    NOW,
    approval,
    cancel,
    claim,
    decide,
    events,
    finish,
    finish_msg,
    js,
    next_wake,
    park,
    park_msg,
    parked,
    retry,
    run,
    status,
    step,
    wake_due,
)

REFUND_SCHEMA = msgspec.json.encode(
    {
        "type": "object",
        "properties": {"order": {"type": "integer"}, "amount": {"type": "integer"}},
        "required": ["order", "amount"],
    }
)
DATA = {"order": 42, "amount": 120}
MINUTE = 60_000
HOUR = 3_600_000


async def approvals(backend: Backend, **filters: Any) -> list[str]:
    return [a.key for a in await backend.read(lambda r: r.approvals(**filters))]


# -- creating ---------------------------------------------------------------------------------


async def test_create_stores_a_pending_request_and_parks_the_run(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice", "bob"], timeout=3600)
    view = await approval(backend, key)
    assert (view.key, view.run_id, view.workflow, view.step, view.status, view.summary) == (
        "refund-1:manager",
        "refund-1",
        "refund",
        "manager",
        "pending",
        "Refund $120",
    )
    assert js(view.data) == js(view.value) == DATA
    assert re.fullmatch(r"[0-9a-f]{64}", view.digest)
    assert view.digest == digest(b'{"order":42,"amount":120}')
    assert (js(view.schema), view.approvers, view.required, view.approved_by, view.decision) == (
        None,
        ["alice", "bob"],
        1,
        [],
        None,
    )
    assert (view.created_at, view.deadline_at) == (iso(NOW), iso(NOW + HOUR))
    assert await events(backend, key) == [("created", None)]
    run_view = await run(backend, "refund-1")
    assert (run_view.status, run_view.waiting_for) == ("waiting", "approval:refund-1:manager")
    assert (await step(backend, "refund-1", "manager")).status == "waiting"
    assert await next_wake(backend) == NOW + HOUR  # its deadline


async def test_a_request_keeps_its_type(backend: Backend) -> None:
    key = await parked(backend, schema=msgspec.Raw(REFUND_SCHEMA))
    assert js((await approval(backend, key)).schema) == msgspec.json.decode(REFUND_SCHEMA)


async def test_a_replayed_park_finds_the_decision_and_goes_on(backend: Backend) -> None:
    """The worker parks again on a request already decided (it replays the run): the
    request is not stored twice, and the step returns the decision at once."""
    key = await parked(backend)
    assert await decide(backend, "approve", key, "alice") == "refund-1"
    a = await claim(backend, "refund-1")
    again = park_msg(a, "manager", "approval", approval=ApprovalSpec(summary="other summary"))
    got = await park(backend, again, NOW + 2000)
    assert got.outcome == ParkOutcome.GO_ON
    assert got.result is not None
    assert msgspec.json.decode(got.result)["status"] == "approved"
    assert (await approval(backend, key)).summary == "Refund $120"  # not stored twice
    assert await status(backend, "refund-1") == "running"


# -- deciding ---------------------------------------------------------------------------------


async def test_approve_settles_and_readies_the_run(backend: Backend) -> None:
    key = await parked(backend)
    assert await decide(backend, "approve", key, "alice") == "refund-1"
    view = await approval(backend, key)
    assert (view.status, view.approved_by) == ("approved", ["alice"])
    assert view.decision is not None
    assert view.decision["by"] == "alice"
    assert view.decision["value"] == DATA
    assert view.decision["decided_at"] == iso(NOW + 1000)
    assert await status(backend, "refund-1") == "pending"
    assert await events(backend, key) == [("created", None), ("approved", "alice")]
    # the run's approval step returns the decision
    s = await step(backend, "refund-1", "manager")
    assert s.status == "completed"
    assert js(s.result) | {"decided_at": 0} == {
        "status": "approved", "approved": True, "value": DATA, "by": "alice",
        "approved_by": ["alice"], "reason": None, "original": DATA, "decided_at": 0,
    }  # fmt: skip
    a = await claim(backend, "refund-1")
    assert [(m.key, m.status) for m in a.memo] == [("manager", "completed")]


async def test_quorum_counts_distinct_approvers(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice", "bob", "carol"], required=2)
    assert await decide(backend, "approve", key, "alice") is None  # one of two
    assert (await approval(backend, key)).status == "pending"
    assert await status(backend, "refund-1") == "waiting"
    with pytest.raises(NotAllowed, match="another approver is needed"):
        await decide(backend, "approve", key, "alice", value=b'{"order":42,"amount":1}')
    assert await decide(backend, "approve", key, "alice") is None  # a double click counts once
    assert (await approval(backend, key)).approved_by == ["alice"]
    assert await decide(backend, "approve", key, "bob") == "refund-1"
    view = await approval(backend, key)
    assert (view.status, view.approved_by) == ("approved", ["alice", "bob"])
    assert await events(backend, key) == [
        ("created", None), ("approved", "alice"), ("approved", "bob"),
    ]  # fmt: skip


async def test_only_listed_approvers_decide(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice"])
    with pytest.raises(NotAllowed, match="mallory may not decide"):
        await decide(backend, "approve", key, "mallory")
    assert (await approval(backend, key)).status == "pending"
    assert await events(backend, key) == [("created", None)]


async def test_the_first_decision_wins(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice", "bob"])
    assert await decide(backend, "reject", key, "bob", reason="too much") == "refund-1"
    with pytest.raises(NotAllowed, match="already rejected by bob"):
        await decide(backend, "approve", key, "alice")
    view = await approval(backend, key)
    assert view.status == "rejected"
    assert view.decision is not None
    assert (view.decision["by"], view.decision["reason"], view.decision["approved"]) == (
        "bob",
        "too much",
        False,
    )
    assert await events(backend, key) == [("created", None), ("rejected", "bob")]
    step_result = js((await step(backend, "refund-1", "manager")).result)
    assert (step_result["status"], step_result["value"]) == ("rejected", DATA)


async def test_a_repeated_decision_succeeds_again_and_changes_nothing(backend: Backend) -> None:
    key = await parked(backend)
    assert await decide(backend, "approve", key, "alice", decision_id="d-1") == "refund-1"
    before = await approval(backend, key)
    # the same decision id, even from another actor, or the same actor clicking again
    assert await decide(backend, "approve", key, "bob", decision_id="d-1") is None
    assert await decide(backend, "approve", key, "alice") is None
    assert await approval(backend, key) == before
    with pytest.raises(NotAllowed):  # a different action is no repeat
        await decide(backend, "reject", key, "alice", reason="changed my mind")


async def test_a_decision_id_is_applied_once_while_pending(backend: Backend) -> None:
    key = await parked(backend, required=2)
    assert await decide(backend, "approve", key, "alice", decision_id="d-1") is None
    assert await decide(backend, "approve", key, "bob", decision_id="d-1") is None  # a retry
    view = await approval(backend, key)
    assert (view.status, view.approved_by) == ("pending", ["alice"])


async def test_a_rejection_needs_a_reason(backend: Backend) -> None:
    key = await parked(backend)
    with pytest.raises(InvalidRequest, match="reason"):
        await decide(backend, "reject", key, "alice")
    assert (await approval(backend, key)).status == "pending"
    assert await events(backend, key) == [("created", None)]


async def test_an_edit_restarts_the_quorum_with_its_editor(backend: Backend) -> None:
    key = await parked(
        backend, approvers=["alice", "bob", "carol"], required=2, schema=msgspec.Raw(REFUND_SCHEMA)
    )
    assert await decide(backend, "approve", key, "alice") is None
    edited = b'{"order":42,"amount":100}'
    assert await decide(backend, "approve", key, "bob", value=edited) is None
    view = await approval(backend, key)
    assert view.approved_by == ["bob"]  # alice approved another value
    assert (js(view.value), js(view.data)) == ({"order": 42, "amount": 100}, DATA)
    assert view.digest == digest(edited)
    with pytest.raises(InvalidRequest, match="does not match the request's type"):
        await decide(backend, "approve", key, "carol", value=b'{"order":"x"}')
    assert await decide(backend, "approve", key, "carol") == "refund-1"  # approves the edit
    view = await approval(backend, key)
    assert (view.status, view.approved_by) == ("edited", ["bob", "carol"])
    assert view.decision is not None
    assert view.decision["value"] == {"order": 42, "amount": 100}
    assert view.decision["original"] == DATA
    assert await events(backend, key) == [
        ("created", None), ("approved", "alice"), ("edited", "bob"), ("approved", "carol"),
    ]  # fmt: skip
    history = (await approval(backend, key)).history
    assert isinstance(history, list)
    edit = history[2]
    assert (js(edit.value), js(edit.original)) == ({"order": 42, "amount": 100}, DATA)


async def test_a_decision_on_a_value_no_longer_shown_is_stale(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice", "bob"], required=2)
    shown = (await approval(backend, key)).digest
    await decide(backend, "approve", key, "alice", value=b'{"order":42,"amount":90}', seen=shown)
    with pytest.raises(Stale, match="changed since it was shown"):
        await decide(backend, "approve", key, "bob", seen=shown)
    view = await approval(backend, key)
    assert (view.status, view.approved_by) == ("pending", ["alice"])
    assert await decide(backend, "approve", key, "bob", seen=view.digest) == "refund-1"
    assert (await approval(backend, key)).status == "edited"


async def test_history_keeps_every_event_in_order(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice", "bob"], required=2)
    await decide(backend, "approve", key, "alice", now=NOW + 1000)
    await decide(backend, "cancel", key, "bob", now=NOW + 2000, reason="order withdrawn")
    view = await approval(backend, key)
    assert isinstance(view.history, list)
    assert [(h.event, h.actor, h.reason) for h in view.history] == [
        ("created", None, None),
        ("approved", "alice", None),
        ("cancelled", "bob", "order withdrawn"),
    ]
    assert [h.at for h in view.history] == [iso(NOW), iso(NOW + 1000), iso(NOW + 2000)]
    assert view.status == "cancelled"
    assert await status(backend, "refund-1") == "pending"  # the step returns the cancellation


async def test_an_unknown_key_is_not_found(backend: Backend) -> None:
    with pytest.raises(ApprovalNotFound):
        await decide(backend, "approve", "nope:manager", "alice")
    with pytest.raises(ApprovalNotFound):
        await approval(backend, "nope:manager")
    with pytest.raises(ApprovalNotFound):
        await backend.read(lambda r: r.link_fields("nope:manager"))


# -- timers -----------------------------------------------------------------------------------


async def test_a_deadline_times_the_request_out_and_the_run_goes_on(backend: Backend) -> None:
    key = await parked(backend, timeout=3600)  # on_timeout="reject"
    assert await wake_due(backend, NOW + HOUR - 1) == ([], [])
    assert await wake_due(backend, NOW + HOUR) == (["refund-1"], [])
    view = await approval(backend, key)
    assert view.status == "timed_out"
    assert view.decision is not None
    assert (view.decision["status"], view.decision["approved"], view.decision["by"]) == (
        "timed_out",
        False,
        None,
    )
    assert await events(backend, key) == [("created", None), ("timed_out", None)]
    assert await status(backend, "refund-1") == "pending"
    assert js((await step(backend, "refund-1", "manager")).result)["status"] == "timed_out"
    assert await next_wake(backend) is None
    with pytest.raises(NotAllowed, match="timed_out"):
        await decide(backend, "approve", key, "alice", now=NOW + HOUR + 1)


async def test_a_deadline_with_on_timeout_fail_fails_the_run(backend: Backend) -> None:
    key = await parked(backend, timeout=60, on_timeout="fail")
    due = await wake_due(backend, NOW + MINUTE)
    assert due == ([], [("refund-1", f"approval {key} timed out")])
    view = await run(backend, "refund-1")
    assert (view.status, view.error) == ("failed", f"approval {key} timed out")
    assert (await approval(backend, key)).status == "timed_out"


async def test_reminders_repeat_until_the_request_is_decided(backend: Backend) -> None:
    key = await parked(backend, remind_every=60, timeout=3600)
    assert await next_wake(backend) == NOW + MINUTE
    assert await wake_due(backend, NOW + MINUTE) == ([], [])
    assert await next_wake(backend) == NOW + 2 * MINUTE  # the next reminder
    assert await wake_due(backend, NOW + 2 * MINUTE + 5) == ([], [])
    assert await next_wake(backend) == NOW + 3 * MINUTE + 5
    assert await events(backend, key) == [("created", None), ("reminded", None), ("reminded", None)]
    assert (await approval(backend, key)).status == "pending"
    await decide(backend, "approve", key, "alice", now=NOW + 3 * MINUTE)
    assert await next_wake(backend) is None  # no reminder, no deadline once decided
    assert await wake_due(backend, NOW + HOUR) == ([], [])
    assert (await events(backend, key))[-1] == ("approved", "alice")


async def test_escalation_adds_approvers_once(backend: Backend) -> None:
    key = await parked(
        backend, approvers=["alice"], escalate_after=600, escalate_to=["boss", "alice"]
    )
    with pytest.raises(NotAllowed, match="boss may not decide"):
        await decide(backend, "approve", key, "boss")
    assert await next_wake(backend) == NOW + 10 * MINUTE
    assert await wake_due(backend, NOW + 10 * MINUTE) == ([], [])
    view = await approval(backend, key)
    assert view.approvers == ["alice", "boss"]
    assert isinstance(view.history, list)
    assert (view.history[-1].event, js(view.history[-1].value)) == ("escalated", ["boss"])
    assert await next_wake(backend) is None  # it escalates once
    assert await backend.read(lambda r: r.link_fields(key)) == LinkFields(
        ["alice", "boss"], None, NOW
    )
    assert await decide(backend, "approve", key, "boss", now=NOW + 11 * MINUTE) == "refund-1"


# -- with the run -----------------------------------------------------------------------------


async def test_cancelling_the_run_cancels_its_open_request(backend: Backend) -> None:
    key = await parked(backend, timeout=3600)
    assert await cancel(backend, "refund-1", "order withdrawn") == "cancelled"
    view = await approval(backend, key)
    assert view.status == "cancelled"
    assert view.decision == {"status": "cancelled", "approved": False}
    assert (await events(backend, key))[-1] == ("cancelled", None)
    assert await next_wake(backend) is None
    with pytest.raises(NotAllowed, match="cancelled"):
        await decide(backend, "approve", key, "alice")


async def test_a_retried_run_asks_again(backend: Backend) -> None:
    key = await parked(backend)
    await cancel(backend, "refund-1")
    await retry(backend, "refund-1", NOW + 10)
    with pytest.raises(ApprovalNotFound):  # the cancelled request went with the step
        await approval(backend, key)
    a = await claim(backend, "refund-1", NOW + 10)
    assert a.memo == []
    msg = park_msg(a, "manager", "approval", approval=ApprovalSpec(summary="again"))
    assert await park(backend, msg, NOW + 20) == Parked(ParkOutcome.PARKED)
    view = await approval(backend, key)
    assert (view.status, view.summary, view.created_at) == ("pending", "again", iso(NOW + 20))


async def test_a_decided_request_survives_a_retry_of_its_run(backend: Backend) -> None:
    key = await parked(backend)
    await decide(backend, "approve", key, "alice")
    a = await claim(backend, "refund-1")
    await finish(backend, finish_msg(a, "fatal", error="E"))
    await retry(backend, "refund-1")
    b = await claim(backend, "refund-1")
    [m] = b.memo
    assert (m.key, msgspec.json.decode(m.result)["status"]) == ("manager", "approved")
    assert (await approval(backend, key)).status == "approved"


async def test_a_pruned_run_takes_its_requests_along(backend: Backend) -> None:
    """A later run reusing the id must never inherit an old decision."""
    key = await parked(backend)
    await decide(backend, "approve", key, "alice")
    a = await claim(backend, "refund-1")
    await finish(backend, finish_msg(a, "completed"), NOW + 2000)
    assert await backend.write(lambda tx: tx.prune(NOW + 3000)) == 1
    with pytest.raises(ApprovalNotFound):
        await approval(backend, key)
    assert await approvals(backend, status=None) == []
    assert await parked(backend) == key
    view = await approval(backend, key)
    assert (view.status, view.approved_by) == ("pending", [])
    assert await events(backend, key) == [("created", None)]


# -- listing ----------------------------------------------------------------------------------


async def test_listing_requests_by_approver_workflow_status_and_run(backend: Backend) -> None:
    first = await parked(backend, "r-1", approvers=["alice"])
    second = await parked(backend, "r-2", workflow="payout", approvers=["bob"])
    anyone = await parked(backend, "r-3")
    await decide(backend, "approve", second, "bob")
    assert await approvals(backend) == [first, anyone]  # pending ones, oldest first
    assert await approvals(backend, status=None) == [first, second, anyone]
    assert await approvals(backend, status="approved") == [second]
    assert await approvals(backend, approver="alice") == [first, anyone]
    assert await approvals(backend, approver="bob", status=None) == [second, anyone]
    assert await approvals(backend, workflow="payout", status=None) == [second]
    assert await approvals(backend, run_id="r-3") == [anyone]
    assert await approvals(backend, status=None, limit=2) == [first, second]
    listed = await backend.read(lambda r: r.approvals(status=None))
    assert all(a.history is msgspec.UNSET for a in listed)


async def test_link_fields(backend: Backend) -> None:
    key = await parked(backend, approvers=["alice"], timeout=60)
    got = await backend.read(lambda r: r.link_fields(key))
    assert got == LinkFields(["alice"], NOW + MINUTE, NOW)
    anyone = await parked(backend, "r-2")
    assert await backend.read(lambda r: r.link_fields(anyone)) == LinkFields(None, None, NOW)
