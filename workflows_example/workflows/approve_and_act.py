"""approve-and-act: ask a person in "Slack", wait up to a day, act on the answer.

    tako run approve-and-act '{"action": "rotate the staging database password"}'
    tako signal decision '{"kind": "approved"}' --run <run_id>

Every run of this workflow waits on the same event name, `decision`, so the
answer is sent to one run with `--run` (or `tako.signal(..., run_id=...)`).
A signal without `--run` would wake every run waiting on `decision`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from tako import Step, workflow

OUTBOX = Path(__file__).resolve().parent.parent / ".tako" / "outbox"
APPROVE_COMMAND = """tako signal decision '{"kind": "approved"}' --run """


class Decision(msgspec.Struct):
    """The only shape a `decision` signal may have for these runs.

    takod checks each signal against this type's JSON Schema before delivering
    it: `{"kind": "maybe"}` sent with `--run` is refused (exit 1) and the run
    keeps waiting, so the handler only ever sees a valid Decision.
    """

    kind: Literal["approved", "rejected"]
    reason: str = ""


@workflow("approve-and-act")
async def approve_and_act(payload: dict[str, Any] | None, step: Step) -> dict[str, Any]:
    action = (payload or {}).get("action", "restart the nightly export")
    how = APPROVE_COMMAND + step.run_id
    await step.run("ask", lambda: post_to_slack(f"Approve “{action}”? To approve, run: {how}"))

    decision = await step.wait_for("decision", timeout="24h", type=Decision)
    if decision is None:
        step.bail("nobody decided within 24h")
    if decision.kind == "rejected":
        return {"done": False, "reason": decision.reason}

    ticket = await step.run("follow-up", lambda: create_follow_up(step.run_id, action))
    return {"done": True, "follow_up": ticket}


# -- the outside world --------------------------------------------------------------


def post_to_slack(text: str) -> None:
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with (OUTBOX / "slack.txt").open("a") as f:
        f.write(f"#ops: {text}\n")


def create_follow_up(run_id: str, action: str) -> str:
    """Open a ticket. One file per run: writing it again after a crash changes nothing."""
    ticket = f"OPS-{run_id[-6:]}"
    folder = OUTBOX / "follow-ups"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ticket}.txt").write_text(f"{ticket}: {action} (approved in run {run_id})\n")
    return ticket
