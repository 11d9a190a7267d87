"""monthly-report: on the first of each month at 06:00 Paris time, mail ops the totals.

    tako schedules                   # its next tick
    tako run monthly-report          # or now, by hand

`schedule=` makes takod start one run per tick, with the run id
`monthly-report@<tick in UTC>` (for example `monthly-report@2026-12-01T05:00:00Z`),
so a tick never starts twice, across restarts and several supervisors. The
cron is read in `timezone`: 06:00 in Paris is 05:00 UTC in winter and 04:00 in
summer. A tick missed while nothing ran is started once when tako is back
(`catch_up="latest"`, the default).

The totals are read in a step (the files change; a replay must see what the
first execution saw), and the mail is a child run of `send-email`, which the
report waits for with `step.invoke`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tako import Step, workflow

OUTBOX = Path(__file__).resolve().parent.parent / ".tako" / "outbox"


@workflow("monthly-report", schedule="0 6 1 * *", timezone="Europe/Paris")
async def monthly_report(payload: Any, step: Step) -> dict[str, Any]:
    totals = await step.run("totals", read_totals)
    when = await step.now()
    body = f"charged {totals['charged'] / 100:.2f} over {totals['orders']} orders"
    mail = {"to": "ops@shop.example", "subject": f"orders until {when:%Y-%m-%d}", "body": body}
    sent = await step.invoke("mail", "send-email", mail)
    return {**totals, "mailed": sent["sent"]}


def read_totals() -> dict[str, int]:
    charges = OUTBOX / "charges.jsonl"
    lines = charges.read_text().splitlines() if charges.exists() else []
    amounts = [json.loads(line)["amount"] for line in lines]
    return {"orders": len(amounts), "charged": sum(amounts)}
