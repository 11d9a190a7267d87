"""Typed waits and approvals only ever resume with a value the workflow's type accepts."""

from __future__ import annotations

import pytest

import tako
from tests.conftest import App, eventually, running, status_of
from tests.integration.test_approvals import parked_key

TYPED = """
    import datetime
    import uuid
    import msgspec
    from tako import workflow

    class Meeting(msgspec.Struct):
        at: datetime.datetime
        room: uuid.UUID
        seats: dict[int, str] = {}

    class Trip(msgspec.Struct):
        day: datetime.date
        nights: int

    @workflow(retries=0)
    async def meet(payload, step):
        meeting = await step.wait_for("meeting", type=Meeting)
        assert isinstance(meeting.at, datetime.datetime)
        return {"at": meeting.at.isoformat(), "seats": sorted(meeting.seats)}

    @workflow(retries=0)
    async def trip(payload, step):
        decision = await step.approval("boss", summary="trip", data=payload, type=Trip)
        assert isinstance(decision.value.day, datetime.date)
        return decision.value.day.isoformat()
"""
ROOM = "12345678-1234-5678-1234-567812345678"


async def test_a_signal_that_does_not_decode_to_the_type_does_not_wake_the_run(app: App) -> None:
    app.write("typed.py", TYPED)
    async with running(app):
        client = app.client()
        run_id = await client.start("meet")
        await eventually(lambda: status_of(client, run_id, "waiting"))
        wrong = [
            ({"at": "next tuesday", "room": ROOM}, "Invalid RFC3339 encoded datetime - at `$.at`"),
            ({"at": "2024-01-01T25:00:00Z", "room": ROOM}, "`$.at`"),
            ({"at": "2024-05-07T09:00:00Z", "room": "room 1"}, "Invalid UUID - at `$.room`"),
            ({"at": "2024-05-07T09:00:00Z", "room": ROOM, "seats": {"A1": "ann"}}, "key 'A1'"),
        ]
        for payload, reason in wrong:
            with pytest.raises(tako.InvalidRequest) as refused:
                await client.signal("meeting", payload, run_id=run_id)
            assert refused.value.code == "invalid" and reason in str(refused.value)
            assert (await client.get_run(run_id)).status == "waiting"
        # a broadcast of the wrong shape is kept for a later waiter, not delivered to this run
        kept = await client.signal("meeting", {"at": "next tuesday", "room": ROOM})
        assert kept == tako.SignalResult(delivered=0, kept=True)
        assert (await client.get_run(run_id)).status == "waiting"
        good = {"at": "2024-05-07T09:00:00+02:00", "room": ROOM, "seats": {"12": "ann"}}
        await client.signal("meeting", good, run_id=run_id)
        result = await client.result(run_id, timeout=15)
        run = await client.get_run(run_id)
    assert result == {"at": "2024-05-07T09:00:00+02:00", "seats": [12]}
    assert run.attempts == 1


async def test_an_edited_approval_value_must_decode_to_the_type(app: App) -> None:
    app.write("typed.py", TYPED)
    async with running(app):
        client = app.client()
        run_id = await client.start("trip", {"day": "2024-06-01", "nights": 2})
        key = await parked_key(client, run_id, "boss")
        with pytest.raises(
            tako.InvalidRequest, match=r"Invalid RFC3339 encoded date - at `\$.day`"
        ):
            await client.approve(key, by="ann", value={"day": "2024-02-30", "nights": 2})
        assert (await client.get_approval(key)).status == "pending"
        await client.approve(key, by="ann", value={"day": "2024-02-29", "nights": 2})
        assert await client.result(run_id, timeout=15) == "2024-02-29"
