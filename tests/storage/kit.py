"""The conformance suite's vocabulary: a worker's messages, and the verbs as takod calls them.

Everything here goes through the `Backend` protocol only (`write(lambda tx: ...)`,
`read(lambda r: ...)`), so a test written with it runs unchanged on every backend.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import msgspec
import trio

from tako._protocol import ApprovalSpec, Assign, Finish, Park, StepDone
from tako._records import ApprovalView, RunView, StepView
from tako.takod import schema_check
from tako.takod.rules.runs import Outcome
from tako.takod.storage import Backend
from tako.takod.storage.interface import (
    WAKE_BATCH,
    Ask,
    Created,
    Delivered,
    Due,
    NewRun,
    Parked,
    ParkOutcome,
    StepSaved,
)

NOW = 1_800_000_000_000  # 2027-01-15T08:00:00.000Z
DAY = 86_400_000
SEQ = itertools.count()  # steps' order of execution, as a worker numbers them


def check(schema: str, payload: bytes) -> str | None:
    """The supervisor's schema check: a JSON Schema (text) against a payload (JSON bytes)."""
    return schema_check.check(json.loads(schema), msgspec.json.decode(payload))


def raw(value: Any) -> bytes:
    """A stored JSON value as read back (a msgspec.Raw), as bytes."""
    assert isinstance(value, msgspec.Raw), value
    return bytes(value)


def js(value: Any) -> Any:
    """A stored JSON value as read back, decoded."""
    return msgspec.json.decode(raw(value))


# -- runs ---------------------------------------------------------------------------------


async def create(
    b: Backend,
    run_id: str | None = None,
    *,
    workflow: str = "fulfill-order",
    payload: bytes = b'{"order": 42}',
    max_attempts: int = 3,
    now: int = NOW,
    delay_ms: int | None = None,
    timeout_ms: int | None = None,
) -> Created:
    new = NewRun(workflow, payload, max_attempts, run_id, delay_ms, timeout_ms)
    return await b.write(lambda tx: tx.create_run(new, now))


async def start(b: Backend, run_id: str | None = None, **kwargs: Any) -> str:
    """A new pending run; returns its id."""
    created = await create(b, run_id, **kwargs)
    assert (created.status, created.deduplicated) == ("pending", False)
    return created.run_id


async def claim(b: Backend, run_id: str, now: int = NOW) -> Assign:
    assigns = await b.write(lambda tx: tx.claim([run_id], now))
    assert [a.run_id for a in assigns] == [run_id]
    return assigns[0]


async def started(b: Backend, run_id: str | None = None, **kwargs: Any) -> Assign:
    """A new run, claimed by a worker."""
    return await claim(b, await start(b, run_id, **kwargs), kwargs.get("now", NOW))


def done(
    a: Assign,
    key: str,
    result: bytes = b"1",
    *,
    status: Literal["completed", "failed"] = "completed",
    error: str | None = None,
    attempts: int = 1,
    token: int | None = None,
) -> StepDone:
    return StepDone(
        run_id=a.run_id,
        token=a.token if token is None else token,
        key=key,
        name=key.split("#")[0],
        status=status,
        result=msgspec.Raw(result),
        error=error,
        attempts=attempts,
        started_at=NOW,
        finished_at=NOW + 5,
        seq=next(SEQ),
    )


def park_msg(
    a: Assign,
    key: str,
    kind: Literal["sleep", "wait", "retry", "approval"],
    *,
    wake_at: int | None = None,
    event: str | None = None,
    schema: Any = None,
    attempts: int = 0,
    error: str | None = None,
    approval: ApprovalSpec | None = None,
) -> Park:
    return Park(
        run_id=a.run_id,
        token=a.token,
        key=key,
        name=event if kind == "wait" and event else key.split("#")[0],
        kind=kind,
        wake_at=wake_at,
        event=event,
        schema=msgspec.Raw(msgspec.json.encode(schema)),
        attempts=attempts,
        error=error,
        started_at=NOW,
        seq=next(SEQ),
        approval=approval,
    )


def finish_msg(
    a: Assign,
    outcome: Literal["completed", "failed", "fatal", "cancelled"],
    result: bytes = b"null",
    *,
    error: str | None = None,
    traceback: str | None = None,
) -> Finish:
    return Finish(
        run_id=a.run_id,
        token=a.token,
        outcome=outcome,
        result=msgspec.Raw(result),
        error=error,
        traceback=traceback,
    )


async def save(b: Backend, step: StepDone, now: int = NOW, release: bool = False) -> StepSaved:
    return await b.write(lambda tx: tx.save_step(step, now, release))


async def park(b: Backend, msg: Park, now: int = NOW) -> Parked:
    return await b.write(lambda tx: tx.park(msg, now, check))


async def finish(b: Backend, msg: Finish, now: int = NOW) -> Outcome:
    return await b.write(lambda tx: tx.finish(msg, now))


async def sleep(b: Backend, a: Assign, key: str, wake_at: int, now: int = NOW) -> None:
    """Park a claimed run on a sleep and check that it really parked."""
    assert await park(b, park_msg(a, key, "sleep", wake_at=wake_at), now) == Parked(
        ParkOutcome.PARKED
    )


async def wait_on(b: Backend, a: Assign, event: str, *, timeout_at: int | None = None) -> None:
    """Park a claimed run on `event` and check that it really parked."""
    msg = park_msg(a, event, "wait", event=event, wake_at=timeout_at)
    assert await park(b, msg) == Parked(ParkOutcome.PARKED)


async def take(b: Backend, a: Assign, event: str, now: int = NOW, schema: Any = None) -> Parked:
    """A claimed run waits for `event`: a kept signal answers at once, else it parks."""
    return await park(b, park_msg(a, event, "wait", event=event, schema=schema), now)


async def signal(
    b: Backend,
    event: str,
    payload: bytes = b"null",
    *,
    run_id: str | None = None,
    ttl_ms: int = 7 * DAY,
    now: int = NOW,
) -> Delivered:
    return await b.write(
        lambda tx: tx.signal(event, payload, run_id=run_id, ttl_ms=ttl_ms, now=now, check=check)
    )


async def cancel(b: Backend, run_id: str, reason: str | None = None, now: int = NOW) -> str:
    return await b.write(lambda tx: tx.cancel(run_id, reason, now))


async def retry(b: Backend, run_id: str, now: int = NOW, timeout_ms: int | None = None) -> None:
    await b.write(lambda tx: tx.retry(run_id, now, timeout_ms))


async def wake_due(b: Backend, now: int, limit: int = WAKE_BATCH) -> Due:
    return await b.write(lambda tx: tx.wake_due(now, limit))


async def ready(b: Backend, now: int = NOW) -> list[str]:
    return await b.write(lambda tx: tx.ready_runs(now))


async def recover(b: Backend, now: int = NOW) -> None:
    await b.write(lambda tx: tx.recover(now))


# -- reads --------------------------------------------------------------------------------


async def run(b: Backend, run_id: str, *, with_steps: bool = True) -> RunView:
    return await b.read(lambda r: r.run(run_id, steps=with_steps))


async def status(b: Backend, run_id: str) -> str:
    return (await run(b, run_id, with_steps=False)).status


async def steps(b: Backend, run_id: str) -> list[StepView]:
    found = (await run(b, run_id)).steps
    assert isinstance(found, list)
    return found


async def step(b: Backend, run_id: str, key: str) -> StepView:
    [found] = [s for s in await steps(b, run_id) if s.key == key]
    return found


async def next_wake(b: Backend) -> int | None:
    return await b.read(lambda r: r.next_wake())


async def counts(b: Backend) -> dict[str, int]:
    return await b.read(lambda r: r.counts())


# -- approvals ----------------------------------------------------------------------------


async def parked(
    b: Backend, run_id: str = "refund-1", *, workflow: str = "refund", **spec: Any
) -> str:
    """A run parked on an approval request, the way takod creates one; returns its key."""
    a = await started(b, run_id, workflow=workflow, payload=b"{}", max_attempts=1)
    spec.setdefault("summary", "Refund $120")
    spec.setdefault("data", msgspec.Raw(b'{"order":42,"amount":120}'))
    msg = park_msg(a, "manager", "approval", approval=ApprovalSpec(**spec))
    assert await park(b, msg) == Parked(ParkOutcome.PARKED)
    return f"{run_id}:manager"


async def decide(
    b: Backend, action: str, key: str, by: str, *, now: int = NOW + 1000, **fields: Any
) -> str | None:
    ask = Ask(action=action, key=key, by=by, **fields)
    return await b.write(lambda tx: tx.decide(ask, now, check))


async def approval(b: Backend, key: str) -> ApprovalView:
    return await b.read(lambda r: r.approval(key))


async def events(b: Backend, key: str) -> list[tuple[str, str | None]]:
    history = (await approval(b, key)).history
    assert isinstance(history, list)
    return [(h.event, h.actor) for h in history]


B = TypeVar("B", bound=Backend)


@asynccontextmanager
async def serving(backend: B) -> AsyncIterator[B]:
    """`backend` with its writer running, as takod runs it; closed afterwards."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.run)
            yield backend
            nursery.cancel_scope.cancel()
    finally:
        backend.close()
