"""takod.approvals.ApprovalStore against a real SQLite store: the decision rules.

Each request is created the way takod creates one: a claimed run parks on
`step.approval(...)` (Store.park), which stores the request and leaves the run
waiting. Every write runs in its own transaction, as the committer would run it.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from tako._errors import ApprovalNotFound, InvalidRequest, NotAllowed
from tako._protocol import ApprovalSpec, Park
from takod.approvals import read_approval
from takod.store import Store, read_run
from tests.unit.storekit import check, tx

NOW = 1_800_000_000_000
REFUND_SCHEMA = msgspec.json.encode(
    {
        "type": "object",
        "properties": {"order": {"type": "integer"}, "amount": {"type": "integer"}},
        "required": ["order", "amount"],
    }
)


def parked(store: Store, run_id: str = "refund-1", **spec: Any) -> str:
    """A run parked on an approval request; returns the request's key."""
    rid, _, _ = tx(
        store, store.create_run, workflow="refund", payload=b"{}", max_attempts=1,
        now=NOW, run_id=run_id, delay_ms=None, timeout_ms=None,
    )  # fmt: skip
    (assign,) = tx(store, store.claim, [rid], NOW)
    spec.setdefault("summary", "Refund $120")
    spec.setdefault("data", msgspec.Raw(b'{"order":42,"amount":120}'))
    msg = Park(
        run_id=rid, token=assign.token, key="manager", name="manager", kind="approval",
        started_at=NOW, approval=ApprovalSpec(**spec),
    )  # fmt: skip
    assert tx(store, store.park, msg, NOW, check) is None
    return f"{rid}:manager"


def decide(store: Store, action: str, key: str, by: str, **kwargs: Any) -> str | None:
    kwargs.setdefault("now", NOW + 1000)
    return tx(store, store.approvals.decide, action, key, by=by, check=check, **kwargs)


def shown(store: Store, key: str) -> dict[str, Any]:
    """The approval object as `tako approvals show` prints it (Raw values decoded)."""
    obj: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(read_approval(store.reader, key)))
    return obj


def events(store: Store, key: str) -> list[tuple[str, str | None]]:
    return [(h["event"], h["actor"]) for h in shown(store, key)["history"]]


def run_status(store: Store, run_id: str) -> str:
    return str(read_run(store.reader, run_id, steps=False)["status"])


def test_create_stores_a_pending_request_and_parks_the_run(store: Store) -> None:
    key = parked(store, approvers=["alice", "bob"], timeout=3600)
    obj = shown(store, key)
    assert obj | {"created_at": "-", "deadline_at": "-", "digest": "-"} == {
        "key": "refund-1:manager", "run_id": "refund-1", "workflow": "refund",
        "step": "manager", "status": "pending", "summary": "Refund $120",
        "data": {"order": 42, "amount": 120}, "value": {"order": 42, "amount": 120},
        "digest": "-", "schema": None, "approvers": ["alice", "bob"], "required": 1,
        "approved_by": [], "decision": None, "created_at": "-", "deadline_at": "-",
        "history": [obj["history"][0]],
    }  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{64}", obj["digest"])
    assert events(store, key) == [("created", None)]
    assert run_status(store, "refund-1") == "waiting"
    assert store.approvals.next_timer() == NOW + 3_600_000  # its deadline


def test_create_again_finds_the_request_and_returns_its_decision_once_decided(
    store: Store,
) -> None:
    key = parked(store)
    spec = ApprovalSpec(summary="other summary")
    assert tx(store, store.approvals.create, key, "refund-1", "manager", spec, NOW) is None
    assert shown(store, key)["summary"] == "Refund $120"  # not stored twice
    decide(store, "approve", key, "alice")
    decision = tx(store, store.approvals.create, key, "refund-1", "manager", spec, NOW)
    assert decision is not None and msgspec.json.decode(decision)["status"] == "approved"


def test_approve_settles_and_readies_the_run(store: Store) -> None:
    key = parked(store)
    assert decide(store, "approve", key, "alice") == "refund-1"
    obj = shown(store, key)
    assert (obj["status"], obj["approved_by"]) == ("approved", ["alice"])
    assert obj["decision"]["by"] == "alice" and obj["decision"]["value"] == obj["data"]
    assert run_status(store, "refund-1") == "pending"
    assert events(store, key) == [("created", None), ("approved", "alice")]


def test_quorum_counts_distinct_approvers(store: Store) -> None:
    key = parked(store, approvers=["alice", "bob", "carol"], required=2)
    assert decide(store, "approve", key, "alice") is None  # one of two
    assert shown(store, key)["status"] == "pending"
    assert run_status(store, "refund-1") == "waiting"
    with pytest.raises(NotAllowed, match="another approver is needed"):
        decide(store, "approve", key, "alice", value=b'{"order":42,"amount":1}')
    assert decide(store, "approve", key, "alice") is None  # a double click counts once
    assert shown(store, key)["approved_by"] == ["alice"]
    assert decide(store, "approve", key, "bob") == "refund-1"
    obj = shown(store, key)
    assert (obj["status"], obj["approved_by"]) == ("approved", ["alice", "bob"])


def test_only_listed_approvers_decide(store: Store) -> None:
    key = parked(store, approvers=["alice"])
    with pytest.raises(NotAllowed, match="mallory may not decide"):
        decide(store, "approve", key, "mallory")
    assert shown(store, key)["status"] == "pending"
    assert events(store, key) == [("created", None)]


def test_the_first_decision_wins(store: Store) -> None:
    key = parked(store, approvers=["alice", "bob"])
    assert decide(store, "reject", key, "bob", reason="too much") == "refund-1"
    with pytest.raises(NotAllowed, match="rejected"):
        decide(store, "approve", key, "alice")
    obj = shown(store, key)
    assert (obj["status"], obj["decision"]["by"], obj["decision"]["reason"]) == (
        "rejected", "bob", "too much",
    )  # fmt: skip
    assert events(store, key) == [("created", None), ("rejected", "bob")]


def test_a_repeated_decision_succeeds_again_and_changes_nothing(store: Store) -> None:
    key = parked(store)
    assert decide(store, "approve", key, "alice", decision_id="d-1") == "refund-1"
    before = shown(store, key)
    # the same decision id, even from another actor, or the same actor clicking again
    assert decide(store, "approve", key, "bob", decision_id="d-1") is None
    assert decide(store, "approve", key, "alice") is None
    assert shown(store, key) == before
    with pytest.raises(NotAllowed):  # a different action is no repeat
        decide(store, "reject", key, "alice", reason="changed my mind")


def test_a_rejection_needs_a_reason(store: Store) -> None:
    key = parked(store)
    with pytest.raises(InvalidRequest, match="reason"):
        decide(store, "reject", key, "alice")
    assert shown(store, key)["status"] == "pending"


def test_an_edit_restarts_the_quorum_with_its_editor(store: Store) -> None:
    key = parked(store, approvers=["alice", "bob", "carol"], required=2, schema=msgspec.Raw(
        REFUND_SCHEMA
    ))  # fmt: skip
    assert decide(store, "approve", key, "alice") is None
    edited = b'{"order":42,"amount":100}'
    assert decide(store, "approve", key, "bob", value=edited) is None
    assert shown(store, key)["approved_by"] == ["bob"]  # alice approved another value
    with pytest.raises(InvalidRequest, match="does not match the request's type"):
        decide(store, "approve", key, "carol", value=b'{"order":"x"}')
    assert decide(store, "approve", key, "carol") == "refund-1"  # approves the edited value
    obj = shown(store, key)
    assert (obj["status"], obj["approved_by"]) == ("edited", ["bob", "carol"])
    assert obj["decision"]["value"] == {"order": 42, "amount": 100}
    assert obj["decision"]["original"] == {"order": 42, "amount": 120}
    assert events(store, key) == [
        ("created", None), ("approved", "alice"), ("edited", "bob"), ("approved", "carol"),
    ]  # fmt: skip


def test_history_keeps_every_event_in_order(store: Store) -> None:
    key = parked(store, approvers=["alice", "bob"], required=2)
    decide(store, "approve", key, "alice", now=NOW + 1000)
    decide(store, "cancel", key, "bob", now=NOW + 2000, reason="order withdrawn")
    history = shown(store, key)["history"]
    assert [(h["event"], h["actor"], h["reason"]) for h in history] == [
        ("created", None, None),
        ("approved", "alice", None),
        ("cancelled", "bob", "order withdrawn"),
    ]
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert shown(store, key)["status"] == "cancelled"


def test_an_unknown_key_is_not_found(store: Store) -> None:
    with pytest.raises(ApprovalNotFound):
        decide(store, "approve", "nope:manager", "alice")
