"""The pure approval rules (takod.rules.approvals): how a decision counts given the
request and its recorded history, and what a request's due timers do."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from tako._errors import InvalidRequest, NotAllowed, Stale
from tako._protocol import ApprovalSpec
from tako._records import iso
from tako.takod.rules.approvals import (
    DECIDED,
    Entry,
    Past,
    Request,
    Timers,
    Verdict,
    decide,
    decided_message,
    decision,
    digest,
    earliest,
    first_timer,
    on_timers,
    timers,
)

NOW = 1_800_000_000_000
KEY = "r-1:manager"
DATA = b'{"order":42,"amount":120}'
EDIT = b'{"order":42,"amount":100}'
SCHEMA = '{"type": "object"}'
MINUTE = 60_000


def request(**fields: Any) -> Request:
    """A pending request anyone may approve alone, with no timers, unless told."""
    base: dict[str, Any] = {
        "key": KEY, "run_id": "r-1", "step_key": "manager", "status": "pending",
        "data": DATA, "value": DATA, "schema": None, "approvers": None, "required": 1,
        "approved_by": [], "decision": None, "decided_at": None, "on_timeout": "reject",
        "remind_every": None, "escalate_to": None, "deadline_at": None, "remind_at": None,
        "escalate_at": None,
    }  # fmt: skip
    return Request(**(base | fields))


def settled(status: str, by: str, **fields: Any) -> Request:
    """A request decided by `by` at NOW."""
    req = request(status=status, decided_at=NOW, **fields)
    req.decision = decision(req, status, by=by, now=NOW)
    return req


class Checker:
    """A schema check that records what it was asked and refuses what it is told to."""

    def __init__(self, refuse: bytes | None = None) -> None:
        self.refuse = refuse
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, schema: str, value: bytes) -> str | None:
        self.calls.append((schema, value))
        return "Expected `int`, got `str` - at `$.order`" if value == self.refuse else None


def judge(req: Request, past: list[Past] | None = None, **kwargs: Any) -> Verdict | None:
    kwargs.setdefault("action", "approve")
    kwargs.setdefault("by", "alice")
    kwargs.setdefault("check", Checker())
    return decide(req, past or [], **kwargs)


# -- settling -------------------------------------------------------------------------------


def test_one_approval_settles_a_request_that_needs_one() -> None:
    assert judge(request()) == Verdict(
        [Entry("approved", "alice", value=DATA)], ["alice"], DATA, "approved"
    )


def test_a_rejection_settles_with_its_reason() -> None:
    verdict = judge(request(approved_by=["alice"]), action="reject", by="bob", reason="too much")
    assert verdict == Verdict(
        [Entry("rejected", "bob", reason="too much")], ["alice"], DATA, "rejected", "too much"
    )


@pytest.mark.parametrize("reason", [None, ""])
def test_a_rejection_needs_a_reason(reason: str | None) -> None:
    with pytest.raises(InvalidRequest, match="a rejection needs a reason"):
        judge(request(), action="reject", reason=reason)


def test_a_cancellation_settles_with_or_without_a_reason() -> None:
    verdict = judge(request(), action="cancel", by="ops", decision_id="d-9")
    assert verdict == Verdict(
        [Entry("cancelled", "ops", decision_id="d-9")], [], DATA, "cancelled", None
    )


def test_the_decision_id_is_recorded_with_the_entry() -> None:
    verdict = judge(request(), decision_id="d-1")
    assert verdict is not None
    assert verdict.history == [Entry("approved", "alice", value=DATA, decision_id="d-1")]


# -- repeats ----------------------------------------------------------------------------------


def test_a_decision_id_already_applied_changes_nothing_whoever_sends_it() -> None:
    past = [Past("created", None, None, None), Past("approved", "alice", DATA, "d-1")]
    pending = request(required=2, approved_by=["alice"])
    assert judge(pending, past, by="bob", decision_id="d-1") is None
    assert judge(pending, past, action="reject", by="bob", decision_id="d-1") is None
    decided = settled("approved", "alice", approved_by=["alice"])
    assert judge(decided, past, action="cancel", by="carol", decision_id="d-1") is None


def test_a_double_click_while_pending_counts_once() -> None:
    past = [Past("approved", "alice", DATA, None)]
    req = request(required=2, approved_by=["alice"])
    assert judge(req, past) is None
    assert judge(req, past, value=DATA) is None  # the same value, sent along this time


def test_approving_again_with_another_value_needs_another_approver() -> None:
    past = [Past("approved", "alice", DATA, None)]
    req = request(required=2, approved_by=["alice"])
    with pytest.raises(NotAllowed, match="alice already approved r-1:manager"):
        judge(req, past, value=EDIT)


@pytest.mark.parametrize(
    ("status", "event", "action", "fields"),
    [
        ("approved", "approved", "approve", {}),
        ("edited", "edited", "approve", {"value": EDIT}),
        ("rejected", "rejected", "reject", {"reason": "again"}),
        ("cancelled", "cancelled", "cancel", {}),
    ],
)
def test_the_decider_repeating_the_decision_succeeds_and_changes_nothing(
    status: str, event: str, action: str, fields: dict[str, Any]
) -> None:
    value = fields.get("value")
    past = [Past(event, "alice", value, None)]
    assert judge(settled(status, "alice"), past, action=action, **fields) is None


@pytest.mark.parametrize("status", DECIDED)
def test_any_other_decision_on_a_decided_request_is_refused_with_its_state(status: str) -> None:
    req = settled(status, "bob")
    past = [Past(status, "bob", None, None)]
    message = f"r-1:manager is already {status} by bob at {iso(NOW)}"
    with pytest.raises(NotAllowed) as refused:
        judge(req, past)  # alice approving
    assert refused.value.message == message
    # nor may the decider change their mind
    action, fields = ("approve", {}) if status == "rejected" else ("reject", {"reason": "r"})
    with pytest.raises(NotAllowed, match="already"):
        judge(req, past, action=action, by="bob", **fields)


def test_a_decided_request_without_a_decider_says_so_without_one() -> None:
    req = request(status="timed_out", decided_at=NOW, decision=None)
    assert decided_message(req) == f"r-1:manager is already timed_out at {iso(NOW)}"


def test_a_repeat_with_a_different_value_is_no_repeat() -> None:
    req = settled("edited", "alice", value=EDIT)
    past = [Past("edited", "alice", EDIT, None)]
    with pytest.raises(NotAllowed, match="already edited"):
        judge(req, past, value=b'{"order":42,"amount":1}')


# -- who may decide, and what they saw ----------------------------------------------------


def test_a_decision_on_a_value_changed_since_it_was_shown_is_stale() -> None:
    req = request(required=2, approved_by=["bob"], value=EDIT)
    with pytest.raises(Stale, match=r"changed since it was shown.*it is now \{"):
        judge(req, seen=digest(DATA))
    verdict = judge(req, seen=digest(EDIT))
    assert verdict is not None
    assert verdict.settle == "edited"


def test_staleness_is_checked_before_the_approvers() -> None:
    req = request(approvers=["bob"])
    with pytest.raises(Stale):
        judge(req, by="mallory", seen="0" * 64)


def test_only_listed_approvers_decide() -> None:
    with pytest.raises(NotAllowed) as refused:
        judge(request(approvers=["alice", "bob"]), by="mallory")
    assert refused.value.message == ("mallory may not decide r-1:manager: approvers are alice, bob")
    with pytest.raises(NotAllowed, match="approvers are none"):
        judge(request(approvers=[]), action="cancel")
    assert judge(request(approvers=["alice"])) is not None


# -- quorum and edits ---------------------------------------------------------------------------


def test_a_quorum_counts_distinct_approvers() -> None:
    first = judge(request(required=3))
    assert first == Verdict([Entry("approved", "alice", value=DATA)], ["alice"], DATA, None)
    second = judge(request(required=3, approved_by=["alice"]), by="bob")
    assert second is not None
    assert (second.approved_by, second.settle) == (["alice", "bob"], None)
    third = judge(request(required=3, approved_by=["alice", "bob"]), by="carol")
    assert third is not None
    assert (third.approved_by, third.settle) == (["alice", "bob", "carol"], "approved")


def test_an_edit_restarts_the_count_with_its_editor() -> None:
    check = Checker()
    req = request(required=2, approved_by=["alice"], schema=SCHEMA)
    verdict = judge(req, by="bob", value=EDIT, check=check)
    assert verdict == Verdict(
        [Entry("edited", "bob", value=EDIT, original=DATA)], ["bob"], EDIT, None
    )
    assert check.calls == [(SCHEMA, EDIT)]
    # approving the edited value as it stands counts toward it, and settles as edited
    after = request(required=2, approved_by=["bob"], value=EDIT, schema=SCHEMA)
    verdict = judge(after, by="carol", check=check)
    assert verdict == Verdict(
        [Entry("approved", "carol", value=EDIT)], ["bob", "carol"], EDIT, "edited"
    )
    assert len(check.calls) == 1  # no new value, nothing to check


def test_an_edit_that_settles_alone_settles_as_edited() -> None:
    verdict = judge(request(), value=EDIT)
    assert verdict is not None
    assert (verdict.settle, verdict.value, verdict.history[0].event) == ("edited", EDIT, "edited")


def test_sending_the_original_value_back_is_no_edit() -> None:
    verdict = judge(request(required=2, approved_by=["bob"]), value=DATA)
    assert verdict == Verdict(
        [Entry("approved", "alice", value=DATA)], ["bob", "alice"], DATA, "approved"
    )


def test_an_edit_that_does_not_match_the_requests_type_is_refused() -> None:
    check = Checker(refuse=b'{"order":"x"}')
    req = request(schema=SCHEMA)
    with pytest.raises(InvalidRequest, match=r"does not match the request's type: .*\$\.order"):
        judge(req, value=b'{"order":"x"}', check=check)
    assert check.calls == [(SCHEMA, b'{"order":"x"}')]


def test_an_untyped_request_takes_any_edit_unchecked() -> None:
    check = Checker(refuse=EDIT)
    verdict = judge(request(), value=EDIT, check=check)
    assert verdict is not None
    assert verdict.settle == "edited"
    assert check.calls == []


# -- the decision ---------------------------------------------------------------------------------


def test_the_decision_carries_the_value_approved_or_the_data_refused() -> None:
    req = request(approved_by=["bob", "carol"], value=EDIT)
    approved = msgspec.json.decode(decision(req, "edited", by="carol", now=NOW))
    assert approved == {
        "status": "edited", "approved": True, "value": {"order": 42, "amount": 100},
        "by": "carol", "approved_by": ["bob", "carol"], "reason": None,
        "original": {"order": 42, "amount": 120}, "decided_at": NOW,
    }  # fmt: skip
    refused = msgspec.json.decode(decision(req, "rejected", by="dave", now=NOW, reason="no"))
    assert (refused["approved"], refused["value"], refused["reason"]) == (
        False,
        {"order": 42, "amount": 120},
        "no",
    )
    timed_out = msgspec.json.decode(decision(request(), "timed_out", by=None, now=NOW))
    assert (timed_out["status"], timed_out["approved"], timed_out["by"]) == (
        "timed_out",
        False,
        None,
    )


def test_the_digest_is_the_sha256_of_the_value() -> None:
    assert digest(DATA) == hashlib.sha256(DATA).hexdigest()
    assert digest(DATA) != digest(EDIT)


# -- timers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("on_timeout", "fail_run"), [("reject", False), ("fail", True)])
def test_a_deadline_reached_times_the_request_out(on_timeout: str, fail_run: bool) -> None:
    req = request(
        on_timeout=on_timeout, deadline_at=NOW, remind_every=MINUTE, remind_at=NOW,
        escalate_to=["boss"], escalate_at=NOW,
    )  # fmt: skip
    # the deadline wins over a reminder and an escalation due at the same moment
    assert on_timers(req, NOW) == Timers(timed_out=True, fail_run=fail_run)
    assert on_timers(req, NOW + 1).timed_out


def test_nothing_due_moves_nothing() -> None:
    req = request(deadline_at=NOW + 10, remind_every=MINUTE, remind_at=NOW + 5, escalate_at=None)
    assert on_timers(req, NOW) == Timers(remind_at=NOW + 5, timer_at=NOW + 5)


def test_a_reminder_moves_on_by_its_period() -> None:
    req = request(deadline_at=NOW + 10 * MINUTE, remind_every=MINUTE, remind_at=NOW)
    due = on_timers(req, NOW + 7)  # the timer fired a little late
    assert due == Timers(reminded=True, remind_at=NOW + 7 + MINUTE, timer_at=NOW + 7 + MINUTE)


def test_the_next_timer_is_the_earliest_left() -> None:
    req = request(deadline_at=NOW + 30, remind_every=MINUTE, remind_at=NOW, escalate_to=["b"])
    req.escalate_at = NOW + 20
    assert on_timers(req, NOW).timer_at == NOW + 20  # the escalation, before the deadline
    req.escalate_at = None
    assert on_timers(req, NOW).timer_at == NOW + 30  # the deadline, before the next reminder


def test_an_escalation_adds_the_approvers_not_there_yet_once() -> None:
    req = request(
        approvers=["alice"], escalate_to=["boss", "alice", "cfo"], escalate_at=NOW,
        remind_every=MINUTE, remind_at=NOW + 5 * MINUTE,
    )  # fmt: skip
    assert on_timers(req, NOW) == Timers(
        escalated=["boss", "cfo"], approvers=["alice", "boss", "cfo"], remind_at=NOW + 5 * MINUTE,
        escalate_at=None, timer_at=NOW + 5 * MINUTE,
    )  # fmt: skip


def test_escalating_a_request_anyone_may_decide_keeps_it_open_to_anyone() -> None:
    req = request(approvers=None, escalate_to=["boss"], escalate_at=NOW)
    due = on_timers(req, NOW)
    assert (due.escalated, due.approvers, due.escalate_at, due.timer_at) == (
        ["boss"],
        None,
        None,
        None,
    )


def test_escalation_and_reminder_due_together_both_happen() -> None:
    req = request(
        approvers=["alice"], escalate_to=["boss"], escalate_at=NOW, remind_every=MINUTE,
        remind_at=NOW,
    )  # fmt: skip
    due = on_timers(req, NOW)
    assert (due.escalated, due.reminded, due.timer_at) == (["boss"], True, NOW + MINUTE)


def test_a_new_requests_timers() -> None:
    spec = ApprovalSpec(
        summary="s", timeout=3600, remind_every=600, escalate_after=1800, escalate_to=["boss"]
    )
    assert timers(spec, NOW) == (NOW + 60 * MINUTE, NOW + 10 * MINUTE, NOW + 30 * MINUTE)
    assert first_timer(spec, NOW) == NOW + 10 * MINUTE
    # an escalation needs someone to escalate to
    lone = ApprovalSpec(summary="s", escalate_after=1800)
    assert timers(lone, NOW) == (None, None, None)
    assert first_timer(lone, NOW) is None
    assert timers(ApprovalSpec(summary="s", timeout=0.5), NOW) == (NOW + 500, None, None)


def test_earliest_ignores_the_timers_not_set() -> None:
    assert earliest() is None
    assert earliest(None, None) is None
    assert earliest(None, NOW + 2, NOW + 1) == NOW + 1
