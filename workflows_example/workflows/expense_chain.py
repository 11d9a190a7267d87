"""expense-approval: an approval chain. The manager always, finance above $1,000, the CEO
above $10,000; any stage may say no.

    tako run expense-approval '{"employee": "dana", "amount": 12500, "description": "booth"}'
    tako approvals
    tako approve <run_id>:manager --by manager
    tako approve <run_id>:finance --by finance
    tako reject <run_id>:ceo --by ceo --reason "not this quarter"

Each stage is one `step.approval`: the run parks (no process held) until the
stage is decided, and the decision is recorded like any step result, so a
resumed run never asks a stage again. Approvers are role names here; in a real
app they would be user ids, and the `--by` of `tako approve` (or the `by=` of
`tako.approve()` in your web app) is the person clicking.

An approver may approve an edited expense (`tako approve KEY --by finance
--value '{...}'`, for example a lower amount): takod checks it against
`Expense` and the later stages and the payment use the approved version. A
rejection, or a stage that nobody decides within three days, ends the run as
`cancelled` with the reason (`step.bail`), after telling the employee.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec

from tako import Step, workflow

OUTBOX = Path(__file__).resolve().parent.parent / ".tako" / "outbox"


class Expense(msgspec.Struct):
    """The payload, and the shape an edited expense must have (amounts in dollars)."""

    employee: str
    amount: Annotated[float, msgspec.Meta(gt=0)]
    description: str = ""


@dataclass(frozen=True)
class Stage:
    name: str  # the step name: the request's key is `<run_id>:<name>`
    approvers: list[str]
    above: float  # the stage asks only for expenses above this amount
    escalate_to: list[str] | None = None


CHAIN = [
    # Nobody decided the manager stage within an hour: the director may decide too.
    Stage("manager", ["manager"], above=0, escalate_to=["director"]),
    Stage("finance", ["finance"], above=1_000),
    Stage("ceo", ["ceo"], above=10_000),
]


@workflow("expense-approval", retries=2)
async def expense_approval(payload: Expense, step: Step) -> dict[str, Any]:
    expense = payload
    approvals: dict[str, str | None] = {}
    for stage in CHAIN:
        if expense.amount <= stage.above:
            continue
        decision = await step.approval(
            stage.name,
            summary=f"Expense ${expense.amount:,.2f} for {expense.employee}: {expense.description}",
            data=expense,
            approvers=stage.approvers,
            timeout="3d",
            on_timeout="reject",  # a stage nobody decides is a no (decision.status "timed_out")
            remind_every="1d",
            escalate_after="1h" if stage.escalate_to else None,
            escalate_to=stage.escalate_to,
            type=Expense,
        )
        if not decision.approved:
            why = decision.reason or decision.status.replace("_", " ")
            text = f"{stage.name} said no to your expense: {why}"
            await step.run("tell employee: no", functools.partial(email, expense.employee, text))
            step.bail(f"{stage.name} {decision.status}: {why}")
        approvals[stage.name] = decision.by
        expense = decision.value  # as approved: possibly edited

    payment = await step.run("reimburse", lambda: reimburse(step.run_id, expense))
    await step.run(
        "tell employee",
        lambda: email(expense.employee, f"${expense.amount:,.2f} is on its way ({payment})"),
    )
    return {"paid": expense.amount, "payment": payment, "approved_by": approvals}


# -- the outside world --------------------------------------------------------------


def reimburse(run_id: str, expense: Expense) -> str:
    """A payout keyed by the run: paying again after a crash finds the first payout."""
    path = OUTBOX / "reimbursements.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            seen: dict[str, Any] = json.loads(line)
            if seen["idempotency_key"] == run_id:
                return str(seen["payment"])
    payment = f"pay_{run_id[-8:]}"
    entry = {"idempotency_key": run_id, "payment": payment, **msgspec.to_builtins(expense)}
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return payment


def email(to: str, text: str) -> None:
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with (OUTBOX / "emails.txt").open("a") as f:
        f.write(f"to {to}: {text}\n")
