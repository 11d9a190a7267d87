"""fulfill-batch: fulfil several orders, each as a child run of its own, then report.

    tako run fulfill-batch '{"order_ids": [41, 43]}'
    tako runs show <run_id>          # its children are listed under its steps

Each order is a `fulfill-order` run started with `step.start_child`: it has its own
retries, its own approval wait (an order above $500 still waits for a person) and
its own timeline, and the batch does not wait for it. The report is a
`send-email` run the batch waits for with `step.invoke`: the batch parks (no
process held) until that child ends, and gets its result, or `ChildFailed` if it
failed. Both are recorded like steps, with the child's creation in the same
transaction: a batch resumed after a crash never starts an order twice. Cancelling
the batch cancels the orders that have not finished.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tako import ChildFailed, Step, workflow


class Batch(msgspec.Struct):
    order_ids: list[int]


@workflow("fulfill-batch")
async def fulfill_batch(payload: Batch, step: Step) -> dict[str, Any]:
    started = [
        await step.start_child(f"order-{oid}", "fulfill-order", {"order_id": oid})
        for oid in payload.order_ids
    ]
    report = {
        "to": "ops@shop.example",
        "subject": f"batch of {len(started)} orders started",
        "body": "\n".join(started),
    }
    try:
        sent = await step.invoke("report", "send-email", report)
    except ChildFailed as exc:  # the orders go on; only the report is missing
        sent = {"sent": False, "why": str(exc)}
    return {"orders": started, "report": sent}
