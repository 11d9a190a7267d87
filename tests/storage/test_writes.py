"""How a backend runs writes: a write that raises leaves nothing behind and takes none
of its neighbours with it; queued writes are answered once committed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tako._errors import NotAllowed, RunNotFound, StaleClaim
from tako.takod.storage import Backend, Tx
from tako.takod.storage.interface import NewRun, Parked, ParkOutcome, QueuedWrite, StepSaved
from tests.storage.kit import (
    NOW,
    cancel,
    counts,
    done,
    raw,
    run,
    signal,
    start,
    started,
    status,
    take,
)
from tests.storage.kit import steps as steps_of


def new(run_id: str) -> NewRun:
    return NewRun("fulfill-order", b"{}", 1, run_id)


async def test_a_write_that_raises_leaves_nothing_behind(backend: Backend) -> None:
    def create_then_refuse(tx: Tx) -> None:
        tx.create_run(new("doomed"), NOW)
        tx.create_run(new("doomed-too"), NOW)
        raise NotAllowed("changed my mind")

    with pytest.raises(NotAllowed, match="changed my mind"):
        await backend.write(create_then_refuse)
    for rid in ("doomed", "doomed-too"):
        with pytest.raises(RunNotFound):
            await run(backend, rid)
    assert await counts(backend) == {}
    # the ids were never taken
    assert (await backend.write(lambda tx: tx.create_run(new("doomed"), NOW))).deduplicated is False


async def test_a_verb_that_raises_halfway_undoes_its_first_half(backend: Backend) -> None:
    """claim() meets a refusal after it claimed its first run: that claim is undone."""
    first = await start(backend, workflow="fine")
    second = await start(backend, workflow="bad", now=NOW + 1)

    def hold(workflow: str) -> str | None:
        if workflow == "bad":
            raise NotAllowed("the catalog refused")
        return None

    with pytest.raises(NotAllowed):
        await backend.write(lambda tx: tx.claim([first, second], NOW, hold))
    assert await status(backend, first) == "pending"
    assert await backend.write(lambda tx: tx.ready_runs(NOW)) == [first, second]
    [a] = await backend.write(lambda tx: tx.claim([first], NOW))
    assert a.token == 1  # the undone claim did not use up a token


async def test_a_signal_that_raises_halfway_wakes_nobody(backend: Backend) -> None:
    """The check fails on the second typed waiter, after the first one was resumed."""
    a, b = await started(backend), await started(backend)
    for x in (a, b):
        assert await take(backend, x, "go", schema={"type": "integer"}) == Parked(
            ParkOutcome.PARKED
        )
    calls: list[str] = []

    def check(schema: str, payload: bytes) -> str | None:
        calls.append(schema)
        if len(calls) == 2:
            raise NotAllowed("the checker broke")
        return None

    with pytest.raises(NotAllowed, match="the checker broke"):
        await backend.write(
            lambda tx: tx.signal("go", b"1", run_id=None, ttl_ms=1000, now=NOW, check=check)
        )
    assert len(calls) == 2
    for x in (a, b):
        view = await run(backend, x.run_id)
        assert (view.status, view.waiting_for) == ("waiting", "go")
        assert [s.status for s in view.steps or []] == ["waiting"]
    woken, kept = await signal(backend, "go", b"1")  # both still wait, nothing was kept
    assert (sorted(woken), kept) == (sorted([a.run_id, b.run_id]), False)


def _raise(exc: Exception) -> None:
    raise exc


async def test_neighbours_of_a_failing_write_are_kept(backend: Backend) -> None:
    answered: list[tuple[str, Any, BaseException | None]] = []
    all_done = trio.Event()

    def on_done(name: str) -> Any:
        def done(item: QueuedWrite[Any]) -> None:
            answered.append((name, item.result, item.error))
            if len(answered) == 4:
                all_done.set()

        return done

    def refused(tx: Tx) -> None:
        tx.create_run(new("b"), NOW)
        raise NotAllowed("b is refused")

    backend.submit(lambda tx: tx.create_run(new("a"), NOW).run_id, on_done("a"))
    backend.submit(refused, on_done("b"))
    backend.submit(lambda tx: tx.create_run(new("c"), NOW).run_id, on_done("c"))
    backend.submit(lambda tx: tx.create_run(new("c"), NOW).deduplicated, on_done("c again"))
    with trio.fail_after(10):
        await all_done.wait()
    assert [(name, result) for name, result, _ in answered] == [
        ("a", "a"),
        ("b", None),
        ("c", "c"),
        ("c again", True),  # it saw c, written before it
    ]
    errors = [error for _, _, error in answered]
    assert isinstance(errors[1], NotAllowed)
    assert errors[0] is errors[2] is errors[3] is None
    assert await counts(backend) == {"pending": 2}
    with pytest.raises(RunNotFound):
        await run(backend, "b")


async def test_a_write_is_answered_once_committed(backend: Backend) -> None:
    """`on_done` runs in trio after the commit: a read issued then sees the write; `early`
    runs before that, off trio, and may answer a sink with the committed result."""

    class Sink:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.sent: list[bytes] = []

        def send_threadsafe(self, data: bytes) -> None:
            with self.lock:
                self.sent.append(data)

    sink = Sink()
    answered: dict[str, QueuedWrite[Any]] = {}
    done = trio.Event()

    def early(item: QueuedWrite[Any]) -> tuple[Sink, bytes]:
        return sink, f"{item.value()};".encode()

    def on_done(name: str) -> Callable[[QueuedWrite[Any]], None]:
        def record(item: QueuedWrite[Any]) -> None:
            answered[name] = item
            if len(answered) == 3:
                done.set()

        return record

    def creating(rid: str) -> Callable[[Tx], str]:
        return lambda tx: tx.create_run(new(rid), NOW).run_id

    x = backend.submit(creating("x"), on_done("x"), early=early)
    y = backend.submit(creating("y"), on_done("y"), early=early)
    refused = backend.submit(
        lambda tx: _raise(NotAllowed("no")), on_done("refused"), early=lambda _: (sink, b"!")
    )
    with trio.fail_after(10):
        await done.wait()
    assert answered == {"x": x, "y": y, "refused": refused}
    assert (x.value(), y.value(), x.error, y.error) == ("x", "y", None, None)
    assert b"".join(sink.sent) == b"x;y;"  # a refused write is not answered early
    assert (x.answered, y.answered, refused.answered) == (True, True, False)
    assert isinstance(refused.error, NotAllowed)
    assert [await status(backend, rid) for rid in ("x", "y")] == ["pending", "pending"]


async def test_an_atomic_write_is_committed_like_any_other(backend: Backend) -> None:
    done = trio.Event()
    item = backend.submit(
        lambda tx: tx.create_run(new("atomic"), NOW), lambda _: done.set(), atomic=True
    )
    with trio.fail_after(10):
        await done.wait()
    assert item.error is None
    assert item.value().run_id == "atomic"
    assert await status(backend, "atomic") == "pending"


async def test_checkpoints_written_together_each_get_their_own_outcome(backend: Backend) -> None:
    """Checkpoints queued at once (a backend may write them in one round trip) are each
    saved, refused as stale, or stopped by a cancel, exactly as one by one."""
    a, b, c, d = [await started(backend, rid) for rid in "abcd"]
    await cancel(backend, "c")  # running: the cancel waits for c's next step
    steps = {
        "a": done(a, "one", b'"a1"'),
        "b": done(b, "one", b'"b1"', token=b.token + 7),  # a worker that lost its claim
        "c": done(c, "one", b'"c1"'),
        "d": done(d, "one", b'"d1"'),
    }
    answered: dict[str, QueuedWrite[Any]] = {}
    all_done = trio.Event()

    def on_done(name: str) -> Callable[[QueuedWrite[Any]], None]:
        def record(item: QueuedWrite[Any]) -> None:
            answered[name] = item
            if len(answered) == len(steps):
                all_done.set()

        return record

    for name, step_done in steps.items():  # no checkpoint between: they queue together
        backend.submit(
            lambda tx, s=step_done: tx.save_step(s, NOW),
            on_done(name),
            atomic=True,
            checkpoint=(step_done, NOW),
        )
    with trio.fail_after(10):
        await all_done.wait()
    assert {n: answered[n].result for n in "acd"} == {
        "a": StepSaved.SAVED,
        "c": StepSaved.CANCELLED,
        "d": StepSaved.SAVED,
    }
    assert isinstance(answered["b"].error, StaleClaim)
    assert [s.key for s in await steps_of(backend, "a")] == ["one"]
    assert await steps_of(backend, "b") == []
    assert await status(backend, "c") == "cancelled"
    assert raw((await steps_of(backend, "d"))[0].result) == b'"d1"'
