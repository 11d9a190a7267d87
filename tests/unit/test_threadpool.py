"""The threads that run sync step bodies: outcomes, batching, blocking bodies, context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest
import trio

from tako.worker_runtime.loops import AsyncioLoop, TrioLoop
from tako.worker_runtime.threadpool import StepThreads

REQUEST = contextvars.ContextVar[str]("request", default="none")


class Slot:
    def __init__(self) -> None:
        self.outcome: tuple[str, Any] | None = None

    def set_result(self, value: Any) -> None:
        self.outcome = ("ok", value)

    def set_exception(self, exc: BaseException) -> None:
        self.outcome = ("error", exc)


def _wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.001)


def test_outcomes_that_arrive_together_are_settled_by_one_wake_up() -> None:
    wakes: list[Any] = []
    pool = StepThreads(wakes.append, limit=8)
    slots = [Slot() for _ in range(50)]
    for i, slot in enumerate(slots):
        pool.submit(slot, lambda i=i: i * 2)
    _wait_until(lambda: len(pool._done) == 50)
    assert len(wakes) == 1  # nobody settled yet: one wake-up is pending, no more asked
    assert all(slot.outcome is None for slot in slots)
    wakes[0]()
    assert [s.outcome for s in slots] == [("ok", i * 2) for i in range(50)]
    # the next outcome asks for a new wake-up: nothing is left behind
    late = Slot()
    pool.submit(late, lambda: "late")
    _wait_until(lambda: len(wakes) == 2)
    wakes[1]()
    assert late.outcome == ("ok", "late")


def test_a_failing_body_reports_its_exception() -> None:
    wakes: list[Any] = []
    pool = StepThreads(wakes.append, limit=2)
    slot = Slot()
    pool.submit(slot, lambda: 1 / 0)
    _wait_until(lambda: wakes)
    wakes[0]()
    assert slot.outcome is not None and isinstance(slot.outcome[1], ZeroDivisionError)


def test_a_blocked_body_never_holds_up_the_next() -> None:
    """Each job has a thread reserved for it (up to the limit), so a body that blocks
    does not sit in front of the next one."""
    wakes: list[Any] = []
    pool = StepThreads(wakes.append, limit=4)
    release = threading.Event()
    blocked, quick = Slot(), Slot()
    pool.submit(blocked, lambda: release.wait(10))
    _wait_until(lambda: pool._idle == 0 and pool._threads == 1)
    pool.submit(quick, lambda: "done")
    _wait_until(lambda: wakes)
    wakes.pop()()
    assert quick.outcome == ("ok", "done") and blocked.outcome is None
    release.set()
    _wait_until(lambda: wakes)
    wakes.pop()()
    assert blocked.outcome == ("ok", True)
    assert pool._threads == 2


def test_idle_threads_are_reused() -> None:
    wakes: list[Any] = []
    pool = StepThreads(wakes.append, limit=64)
    for _ in range(20):
        slot = Slot()
        pool.submit(slot, lambda: None)
        _wait_until(lambda: wakes and pool._idle == 1)
        wakes.pop()()
    assert pool._threads == 1


def test_asyncio_runs_bodies_in_threads_with_the_callers_context() -> None:
    async def main() -> list[Any]:
        loop = AsyncioLoop(threads=16)
        REQUEST.set("r-1")

        async def one(i: int) -> Any:
            return await loop.in_thread(lambda: (i, REQUEST.get(), threading.current_thread().name))

        return await asyncio.gather(*(one(i) for i in range(200)))

    out = asyncio.run(main())
    assert [o[0] for o in out] == list(range(200))
    assert {o[1] for o in out} == {"r-1"}
    assert {o[2] for o in out} == {"step"}


def test_asyncio_raises_the_bodys_exception_in_the_task() -> None:
    async def main() -> None:
        loop = AsyncioLoop(threads=2)
        with pytest.raises(KeyError, match="missing"):
            await loop.in_thread(lambda: {}["missing"])

    asyncio.run(main())


def test_asyncio_abandons_a_cancelled_body() -> None:
    async def main() -> Any:
        loop = AsyncioLoop(threads=2)
        release = threading.Event()
        task = asyncio.ensure_future(loop.in_thread(lambda: release.wait(10)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()  # the abandoned body finishes into a closed slot: no error
        return await loop.in_thread(lambda: "after")

    assert asyncio.run(main()) == "after"


def test_trio_runs_bodies_and_raises_their_exceptions() -> None:
    async def main() -> list[Any]:
        loop = TrioLoop(threads=16)
        REQUEST.set("r-2")
        out: list[Any] = []

        async def one(i: int) -> None:
            out.append(await loop.in_thread(lambda: (i, REQUEST.get())))

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        with pytest.raises(ValueError, match="bad"):
            await loop.in_thread(lambda: int("bad"))
        return out

    out = trio.run(main)
    assert sorted(o[0] for o in out) == list(range(200))
    assert {o[1] for o in out} == {"r-2"}
