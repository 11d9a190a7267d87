"""fulfill-order: load an order, charge it, hold big ones for approval, ship, notify.

    tako run fulfill-order '{"order_id": 42}'
    tako signal approval:order-42 '{"approved": true, "by": "alice"}'

The rules of durable execution, as they apply here:

- The handler runs again from the top every time the run resumes (after the
  approval arrives, after a crash, after a restart). Every step that already
  finished returns its recorded result instead of running again.
- So every side effect (charging, shipping, sending mail) and every read of
  data that may change (the orders "database") lives inside a step. Code
  between steps must be cheap and deterministic: it runs again on every
  resume.
- A finished step never runs twice, but a step that was running when its
  worker died runs again. Steps with effects that must not repeat (money!)
  pass an idempotency key to the outside system.

The "outside world" is a few files under `.tako/outbox/` in this folder, so
the example runs offline.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import msgspec

from tako import NonRetryable, Step, workflow

APP = Path(__file__).resolve().parent.parent
ORDERS = APP / "data" / "orders.json"
OUTBOX = APP / ".tako" / "outbox"
APPROVAL_THRESHOLD = 50_000  # cents: orders above $500.00 wait for a person


class OrderRequest(msgspec.Struct):
    """The payload. A payload that does not convert fails the run at once, without retries."""

    order_id: int


@workflow("fulfill-order", retries=4)
async def fulfill_order(payload: OrderRequest, step: Step) -> dict[str, Any]:
    order = await step.run("load-order", lambda: load_order(payload.order_id))
    if order is None:
        # Retrying will not make the order exist: fail now.
        raise NonRetryable(f"no order {payload.order_id} in {ORDERS.name}")

    # The key is the same on every replay and every attempt of this run, so the
    # payment side charges at most once per run and order, even when this step
    # runs again after a crash.
    key = f"{step.run_id}:order-{order['id']}"
    charge_id = await step.run("charge", lambda: charge(order, key), retries=2)

    if order["total"] > APPROVAL_THRESHOLD:
        # Parks the run: no process, no memory, just rows in runs.db until
        # `approval:order-<id>` is signalled or seven days pass. The decision
        # (or None on timeout) is recorded like any step result. A timed-out
        # order keeps its charge and waits for a person; a rejected one is refunded.
        decision = await step.wait_for(f"approval:order-{order['id']}", timeout="7d")
        if decision is None:
            step.bail("approval timed out — order held")
        if not decision["approved"]:
            await step.run("refund", lambda: refund(charge_id, key))
            step.bail(f"rejected by {decision['by']}")

    tracking = await step.run("ship", lambda: ship(order, key))
    # Sending mail twice after a crash is acceptable here, so no key.
    await step.run("notify", lambda: notify(order, tracking))
    return {"shipped": order["id"]}


# -- the outside world --------------------------------------------------------------


def load_order(order_id: int) -> dict[str, Any] | None:
    orders: dict[str, dict[str, Any]] = json.loads(ORDERS.read_text())
    return orders.get(str(order_id))


def charge(order: dict[str, Any], key: str) -> str:
    """A payment API that honours idempotency keys: a repeated key returns the first charge."""
    entry = {"charge_id": f"ch_{uuid.uuid4().hex[:12]}", "order": order["id"]}
    return _record_once("charges.jsonl", key, {**entry, "amount": order["total"]})["charge_id"]


def refund(charge_id: str, key: str) -> str:
    entry = {"refund_id": f"re_{uuid.uuid4().hex[:12]}", "charge_id": charge_id}
    return _record_once("refunds.jsonl", key, entry)["refund_id"]


def ship(order: dict[str, Any], key: str) -> str:
    """A carrier API that takes our reference and books one shipment per reference."""
    entry = {"tracking": f"TRK{uuid.uuid4().hex[:10].upper()}", "order": order["id"]}
    return _record_once("shipments.jsonl", key, entry)["tracking"]


def notify(order: dict[str, Any], tracking: str) -> None:
    line = f"to {order['customer']}: order {order['id']} shipped, tracking {tracking}\n"
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with (OUTBOX / "notifications.txt").open("a") as f:
        f.write(line)


def _record_once(file: str, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    path = OUTBOX / file
    if path.exists():
        for line in path.read_text().splitlines():
            seen: dict[str, Any] = json.loads(line)
            if seen["idempotency_key"] == key:
                return seen
    entry = {"idempotency_key": key, **entry}
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry
