"""Supervisors sharing a store, through the storage seam: joining, leases, taking back the
runs of one gone silent, releasing runs nobody holds, outbox events taken for a lease."""

from __future__ import annotations

from tako.takod.storage import Backend
from tests.storage.kit import NOW, decide, parked, start, status

LEASE = 30_000


async def join(b: Backend, host: str, now: int = NOW) -> int:
    return await b.write(lambda tx: tx.join(host, 100, now))


async def claimed_by(b: Backend, owner: int, now: int = NOW) -> str:
    """A new run, claimed for the supervisor `owner`; its id."""
    rid = await start(b, now=now)
    assigns = await b.write(lambda tx: tx.claim([rid], now, None, owner))
    assert [a.run_id for a in assigns] == [rid]
    return rid


async def test_joined_supervisors_are_listed_while_their_heartbeat_is_fresh(
    backend: Backend,
) -> None:
    a, b = await join(backend, "app1"), await join(backend, "app2", NOW + 1000)
    assert a != b
    listed = await backend.read(lambda r: r.supervisors(NOW + 1000, LEASE))
    assert [(s.host, s.pid, s.since) for s in listed] == [
        ("app1", 100, "2027-01-15T08:00:00.000Z"),
        ("app2", 100, "2027-01-15T08:00:01.000Z"),
    ]
    assert await backend.write(lambda tx: tx.heartbeat(b, 3, NOW + LEASE))
    later = await backend.read(lambda r: r.supervisors(NOW + LEASE + 500, LEASE))
    assert [(s.host, s.workers) for s in later] == [("app2", 3)]  # app1 went silent
    await backend.write(lambda tx: tx.leave(b))
    assert await backend.read(lambda r: r.supervisors(NOW + LEASE + 500, LEASE)) == []
    assert not await backend.write(lambda tx: tx.heartbeat(b, 0, NOW + LEASE + 600))


async def test_the_runs_of_a_supervisor_silent_past_its_lease_go_back_to_the_queue(
    backend: Backend,
) -> None:
    gone, alive = await join(backend, "gone"), await join(backend, "alive")
    lost, kept = await claimed_by(backend, gone), await claimed_by(backend, alive)
    later = NOW + LEASE + 1
    assert await backend.write(lambda tx: tx.heartbeat(alive, 1, later))
    requeued = await backend.write(lambda tx: tx.recover(later, LEASE))
    assert requeued == [lost]
    assert (await status(backend, lost), await status(backend, kept)) == ("pending", "running")
    # the one gone is forgotten: back, it finds out and joins again
    assert not await backend.write(lambda tx: tx.heartbeat(gone, 1, later + 1))
    assert await backend.write(lambda tx: tx.recover(later + 2, LEASE)) == []


async def test_a_supervisor_starting_alone_takes_back_every_run_left_running(
    backend: Backend,
) -> None:
    before = await join(backend, "earlier")
    rid = await claimed_by(backend, before)
    now = NOW + 5
    me = await join(backend, "me", now)
    assert await backend.write(lambda tx: tx.recover(now, None)) == [rid]
    assert await status(backend, rid) == "pending"
    listed = await backend.read(lambda r: r.supervisors(now, LEASE))
    assert [s.host for s in listed] == ["me"]  # the earlier one is history
    assert await backend.write(lambda tx: tx.heartbeat(me, 0, now + 1))


async def test_runs_claimed_long_ago_that_no_worker_holds_are_released(backend: Backend) -> None:
    me = await join(backend, "me")
    held, orphan = await claimed_by(backend, me), await claimed_by(backend, me)
    recent = await claimed_by(backend, me, now=NOW + LEASE)
    released = await backend.write(
        lambda tx: tx.release_orphans(me, {held}, NOW + LEASE - 1, NOW + LEASE)
    )
    assert released == [orphan]
    assert [await status(backend, r) for r in (held, orphan, recent)] == [
        "running",
        "pending",
        "running",  # claimed too recently: its assignment may still be on its way
    ]


async def test_an_event_taken_for_delivery_is_nobody_elses_until_its_lease_ends(
    backend: Backend,
) -> None:
    backend.events.targets = ("webhook",)
    await parked(backend, "refund-1")
    taken = await backend.write(lambda tx: tx.take_events("webhook", NOW, 60_000))
    assert [e.event_id for e in taken] == ["refund-1:manager#1"]
    assert await backend.write(lambda tx: tx.take_events("webhook", NOW + 59_999, 60_000)) == []
    again = await backend.write(lambda tx: tx.take_events("webhook", NOW + 60_000, 60_000))
    assert [e.event_id for e in again] == ["refund-1:manager#1"]  # its deliverer went quiet
    for at in (NOW + 60_001, NOW + 60_002):  # both deliverers report it: recorded once
        await backend.write(lambda tx, at=at: tx.mark_delivered("webhook", again[0].event_id, at))
    approval = await backend.read(lambda r: r.approval("refund-1:manager"))
    assert [h.event for h in approval.history or []].count("notified") == 1
    assert await decide(backend, "approve", "refund-1:manager", "alice") == "refund-1"
    later = await backend.write(lambda tx: tx.take_events("webhook", NOW + 60_003, 60_000))
    assert [e.event_id for e in later] == ["refund-1:manager#2"]  # the next, in order
