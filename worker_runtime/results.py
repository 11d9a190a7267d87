"""What a recorded step's result becomes in the workflow: a value of the type asked
for, a decision, a wait's payload or None, a child run's result or its failure.

The same conversion serves the step's first execution and every replay, so a
replay hands the workflow exactly what the first execution did.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from tako._errors import ChildCancelled, ChildFailed
from tako._records import Decision, StoredDecision, ms_to_datetime

# what each kind of recorded step was, as a replay that finds another kind says it
KINDS = {
    "run": "a step.run", "sleep": "a step.sleep", "wait": "a step.wait_for",
    "wait_any": "a step.wait_for_any", "approval": "a step.approval",
    "invoke": "a step.invoke", "child": "a step.start_child",
}  # fmt: skip


def decode(raw: bytes, type_: Any = None) -> Any:
    return msgspec.json.decode(raw) if type_ is None else msgspec.json.decode(raw, type=type_)


def decode_optional(raw: bytes, type_: Any) -> Any:
    """A wait's result: None (timed out) stays None whatever `type` says."""
    return None if raw == b"null" else decode(raw, type_)


def decision_of(raw: bytes, type_: Any) -> Decision:
    """The stored decision, with its value converted to the request's type."""
    d = msgspec.json.decode(raw, type=StoredDecision)
    value = bytes(d.value)
    return Decision(
        status=d.status,
        approved=d.approved,
        value=decode(value, type_ if d.approved and value != b"null" else None),
        by=d.by,
        approved_by=d.approved_by,
        reason=d.reason,
        original=decode(bytes(d.original)),
        decided_at=ms_to_datetime(d.decided_at),
    )


def is_typed(value: Any) -> bool:
    return isinstance(value, msgspec.Struct) or dataclasses.is_dataclass(value)


class ChildOutcome(msgspec.Struct):
    """How a child run ended, as its parent's `step.invoke` records it."""

    run_id: str
    status: str
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: str | None = None


def child_result(raw: bytes, workflow: str, type_: Any = None) -> Any:
    """The child's result; its failure or cancellation raised in the parent."""
    child = msgspec.json.decode(raw, type=ChildOutcome)
    if child.status == "failed":
        raise ChildFailed(
            f"child run {child.run_id} ({workflow}) failed: {child.error}", run_id=child.run_id
        )
    if child.status == "cancelled":
        raise ChildCancelled(
            f"child run {child.run_id} ({workflow}) was cancelled: {child.error}",
            run_id=child.run_id,
        )
    return decode(bytes(child.result), type_)
