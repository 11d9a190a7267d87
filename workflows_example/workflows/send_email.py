"""send-email: mail to our own domain goes out at once; mail to anyone else needs a yes.

    tako run send-email '{"to": "ops@shop.example", "subject": "stock report"}'
    tako run send-email '{"to": "press@news.example", "subject": "our numbers", "body": "..."}'
    tako approve <run_id>:send --by legal
    tako approve <run_id>:send --by legal --value '{"to": "press@news.example", "subject": "hi"}'
    tako reject <run_id>:send --by legal --reason "not before the earnings call"

`step.gated` wraps a call with a side effect: when `requires_approval(args)`
is false it runs `fn(args)` right away (as the step `send:run`); otherwise it
first asks for approval (the step `send`), showing `describe(args)` and the
args, and then calls `fn` with the approved args, which the approver may have
edited (takod checks an edit against `Email`, the type of the args). A
rejection, a timeout or a cancelled request raises `ApprovalRejected`, and
nothing is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from tako import ApprovalRejected, Step, workflow

OUTBOX = Path(__file__).resolve().parent.parent / ".tako" / "outbox"
OUR_DOMAIN = "@shop.example"


class Email(msgspec.Struct):
    to: str
    subject: str
    body: str = ""


@workflow("send-email")
async def send_email(payload: Email, step: Step) -> dict[str, Any]:
    try:
        sent_to = await step.gated(
            "send",
            deliver,
            payload,
            requires_approval=lambda e: not e.to.endswith(OUR_DOMAIN),
            describe=lambda e: f"Send “{e.subject}” to {e.to}",
            approvers=["legal"],
            timeout="1d",
        )
    except ApprovalRejected as exc:
        return {"sent": False, "why": str(exc)}
    return {"sent": True, "to": sent_to}


def deliver(email: Email) -> str:
    """The mail server. Sending twice after a crash is acceptable here: no idempotency key."""
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with (OUTBOX / "sent_mail.txt").open("a") as f:
        f.write(f"to {email.to}: {email.subject}\n{email.body}\n\n")
    return email.to
