"""Two supervisors on one PostgreSQL: a checkpoint racing the run being taken away.

Under READ COMMITTED a plain "is the run still held?" check reads the run's last
committed row, even while another supervisor's transaction is taking the run
away. Without a lock the checkpoint is stored against a claim that is being
revoked, the new holder replays without it, and the step runs twice although
its first worker was told it was stored. The check must wait for that
transaction, then refuse.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable

import pytest
import trio

from tako._errors import StaleClaim
from tako.takod.storage import Backend
from tako.takod.storage.interface import Tx
from tests.conftest import eventually
from tests.pg import database_url, drop_app, fresh_app
from tests.storage import kit


@pytest.fixture
async def two() -> AsyncIterator[tuple[Backend, Backend, str]]:
    """Two backends on one schema, as two supervisors of one app have."""
    from tako.takod.storage.postgres import PostgresBackend

    url, app = database_url(), fresh_app()
    try:
        async with (
            kit.serving(PostgresBackend(url, app)) as a,
            kit.serving(PostgresBackend(url, app)) as b,
        ):
            yield a, b, url
    finally:
        drop_app(url, app)


async def _sessions(url: str, where: str) -> int:
    """How many sessions on the test database match `where` (pg_stat_activity)."""
    import psycopg

    def count() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                f" AND {where}"
            ).fetchone()
        return int(row[0]) if row else 0

    return await trio.to_thread.run_sync(count)


def _waiting_on_a_lock(url: str) -> Awaitable[int]:
    return _sessions(url, "wait_event_type = 'Lock'")


async def test_a_checkpoint_waits_for_a_run_being_taken_away_then_is_refused(
    two: tuple[Backend, Backend, str],
) -> None:
    a, b, url = two
    held = await kit.started(a, "r-1")  # supervisor a's worker holds the run
    gate = threading.Event()

    def take_away(tx: Tx) -> None:  # b requeues it (a's lease ran out), and dawdles
        tx.requeue_lost(["r-1"], alone=False, reason="lease", now=kit.NOW)
        gate.wait(30)

    outcome: list[object] = []

    async def checkpoint() -> None:
        try:
            outcome.append(await kit.save(a, kit.done(held, "s0")))
        except StaleClaim as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(b.write, take_away)
            # b has taken the run and sits in its open transaction
            await eventually(lambda: _sessions(url, "state = 'idle in transaction'"), what="b")
            nursery.start_soon(checkpoint)
            # the checkpoint either went through already (the bug) or waits for b's lock

            async def settled() -> bool:
                return bool(outcome) or await _waiting_on_a_lock(url) >= 1

            await eventually(settled, what="the checkpoint to be stored or to wait")
            assert not outcome, f"a checkpoint was stored against a claim being revoked: {outcome}"
        finally:
            gate.set()  # b commits; the checkpoint, if it waited, goes on
    assert len(outcome) == 1 and isinstance(outcome[0], StaleClaim), outcome
    assert await kit.steps(a, "r-1") == []  # nothing stored: b's replay runs s0, once
    again = await kit.claim(b, "r-1")
    assert again.memo == [] and again.token > held.token
