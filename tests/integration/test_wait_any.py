"""`step.wait_for_any`: the first of several events wins, the others stay unconsumed,
the result names the winner, a timeout gives None; on SQLite and on PostgreSQL."""

from __future__ import annotations

import trio

import tako
from tests.conftest import BOTH_STORES, App, running

pytestmark = BOTH_STORES

FLOWS = """
    from tako import workflow

    @workflow("checkout")
    async def checkout(payload, step):
        first = await step.wait_for_any("outcome", ["paid", "declined"], timeout="1h")
        if first is None:
            return {"outcome": None}
        return {"outcome": first.name, "payload": first.payload, "type": type(first).__name__}

    @workflow("later")
    async def later(payload, step):
        return await step.wait_for(payload)
"""


async def test_the_first_event_wins_and_the_other_is_kept(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        run_id = await client.start("checkout")
        run = await client.wait(run_id, parked=True, timeout=30)
        assert (run.status, run.waiting_for) == ("waiting", "paid or declined")

        replies: dict[str, tako.SignalResult] = {}

        async def send(event: str) -> None:
            replies[event] = await client.signal(event, {"by": event})

        async with trio.open_nursery() as nursery:  # both at once
            nursery.start_soon(send, "paid")
            nursery.start_soon(send, "declined")
        result = await client.result(run_id, timeout=30)
        winner = result["outcome"]
        loser = "declined" if winner == "paid" else "paid"
        assert result == {"outcome": winner, "payload": {"by": winner}, "type": "Event"}
        assert (replies[winner].delivered, replies[winner].kept) == (1, False)
        assert (replies[loser].delivered, replies[loser].kept) == (0, True)
        step = next(s for s in (await client.get_run(run_id)).steps or [] if s.key == "outcome")
        assert (step.kind, step.result) == ("wait_any", {"name": winner, "payload": {"by": winner}})

        # the other event was not consumed: a later wait for it gets it
        other = await client.start("later", loser)
        assert await client.result(other, timeout=30) == {"by": loser}


async def test_a_kept_signal_answers_at_once(app: App) -> None:
    app.write("flows.py", FLOWS)
    async with running(app):
        client = app.client()
        kept = await client.signal("declined", "card refused")
        assert kept.kept
        run_id = await client.start("checkout")
        assert (await client.result(run_id, timeout=30))["payload"] == "card refused"
