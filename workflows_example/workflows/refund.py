"""refund: a refund a person approves, possibly for a different amount.

    tako run refund '{"order_id": 42, "amount": 129900, "reason": "arrived broken"}'
    tako approvals show <run_id>:approve-refund
    tako approve <run_id>:approve-refund --by support-lead
    tako approve <run_id>:approve-refund --by support-lead --value @partial.json

The approver sees the requested refund (`data`) and may approve it as is, or
approve an edited one: `--value` with a whole `Refund`, for example half the
amount. takod checks the edited value against `Refund` (an amount of "lots",
or one of 0, is refused with exit 1 and the request stays pending), and the
refund step pays `decision.value.amount`: what was approved, not what was
asked. `tako approvals show` keeps both (the history's `edited` entry has the
value and the original). Amounts are in cents, as in `data/orders.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import msgspec

from tako import NonRetryable, Step, workflow

APP = Path(__file__).resolve().parent.parent
ORDERS = APP / "data" / "orders.json"
OUTBOX = APP / ".tako" / "outbox"


class Refund(msgspec.Struct):
    order_id: int
    amount: Annotated[int, msgspec.Meta(gt=0)]  # cents
    reason: str = ""


@workflow("refund")
async def refund(payload: Refund, step: Step) -> dict[str, Any]:
    order = await step.run("load-order", lambda: load_order(payload.order_id))
    if order is None:
        raise NonRetryable(f"no order {payload.order_id} in {ORDERS.name}")

    decision = await step.approval(
        "approve-refund",
        summary=(
            f"Refund ${payload.amount / 100:,.2f} of ${order['total'] / 100:,.2f}"
            f" to {order['customer']} (order {order['id']}): {payload.reason}"
        ),
        data=payload,
        approvers=["support-lead"],
        timeout="2d",
        type=Refund,  # an edited value must be a Refund; decision.value is one
    )
    if not decision.approved:
        step.bail(f"refund {decision.status}: {decision.reason or 'no reason given'}")
    approved: Refund = decision.value
    if approved.amount > order["total"]:
        raise NonRetryable(f"cannot refund {approved.amount} of an order of {order['total']}")

    refund_id = await step.run("pay", lambda: pay(step.run_id, order, approved.amount))
    return {"refunded": approved.amount, "asked": payload.amount, "refund_id": refund_id}


# -- the outside world --------------------------------------------------------------


def load_order(order_id: int) -> dict[str, Any] | None:
    orders: dict[str, dict[str, Any]] = json.loads(ORDERS.read_text())
    return orders.get(str(order_id))


def pay(run_id: str, order: dict[str, Any], amount: int) -> str:
    """The payment API, keyed by the run: a repeated call returns the first refund."""
    path = OUTBOX / "refund_payments.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            seen: dict[str, Any] = json.loads(line)
            if seen["idempotency_key"] == run_id:
                return str(seen["refund_id"])
    entry = {"idempotency_key": run_id, "refund_id": f"re_{run_id[-8:]}", "order": order["id"]}
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({**entry, "amount": amount, "customer": order["customer"]}) + "\n")
    return str(entry["refund_id"])
