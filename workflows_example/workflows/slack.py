"""The shop's "Slack": every approval request is posted with a link per approver.

Open an Approve link from `.tako/outbox/slack-approvals.txt` in a browser:
the page shows the request, and only its Approve button decides (a link
preview that fetches the link decides nothing). The links are signed for
one approver each and expire at the request's deadline.
"""

from __future__ import annotations

from pathlib import Path

import tako

OUTBOX = Path(__file__).resolve().parent.parent / ".tako" / "outbox"


@tako.notifier
def post_approval_requests(event: tako.ApprovalEvent) -> None:
    """A message per new request (and per reminder), each approver with their own link."""
    if event.type not in ("requested", "reminder") or not event.links:
        return
    lines = [f"#approvals: {event.summary} ({event.workflow}, {event.key})"]
    for approver, link in sorted(event.links.items()):
        who = "anyone" if approver == "*" else approver
        lines.append(f"  {who}: approve {link['approve']}  ·  reject {link['reject']}")
    OUTBOX.mkdir(parents=True, exist_ok=True)
    with (OUTBOX / "slack-approvals.txt").open("a") as f:
        f.write("\n".join(lines) + "\n")
