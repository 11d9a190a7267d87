"""The one timer (takod.scheduler) on trio's MockClock: days pass in no time, nothing sleeps.

The service (and the storage backend behind it) is replaced by a plain in-memory list of
due times with the same two calls the scheduler makes: `next_wake()` (the earliest due
time, a read) and `wake_due(now)` (move on everything due at `now`, a write).
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from tako.takod.scheduler import SAFETY_SWEEP, Scheduler, TrioClock

EPOCH = 1_800_000_000_000
SWEEP_MS = int(SAFETY_SWEEP * 1000)
DAY_MS = 86_400_000


class FakeService:
    """Due times in a sorted list; records what fired and when."""

    def __init__(self, clock: TrioClock) -> None:
        self.clock = clock
        self.due: list[int] = []
        self.fired: list[tuple[int, int]] = []  # (due time, wall time it fired at)
        self.wake_calls: list[int] = []
        self.next_wake_calls = 0
        self.hold_next_wake: int | None = None  # pause the n-th next_wake call after it reads
        self.reading = trio.Event()
        self.release = trio.Event()
        self.first_read = trio.Event()

    def add(self, at_ms: int) -> None:
        bisect.insort(self.due, at_ms)

    async def next_wake(self) -> int | None:
        self.next_wake_calls += 1
        answer = self.due[0] if self.due else None
        if self.next_wake_calls == self.hold_next_wake:
            self.reading.set()
            await self.release.wait()  # what was read is now out of date
        await trio.lowlevel.checkpoint()
        self.first_read.set()  # no checkpoint from here until the scheduler sleeps
        return answer

    async def wake_due(self, now: int) -> None:
        await trio.lowlevel.checkpoint()
        assert now == self.clock.now_ms()
        self.wake_calls.append(now)
        cut = bisect.bisect_right(self.due, now)
        self.fired.extend((t, now) for t in self.due[:cut])
        del self.due[:cut]


@pytest.fixture
def clock() -> TrioClock:
    return TrioClock(EPOCH)


@pytest.fixture
def fake(clock: TrioClock) -> FakeService:
    return FakeService(clock)


# pytest-trio runs a test on the clock found among the *test's* arguments, so every test
# below asks for `autojump_clock` itself, even when only the `scheduler` fixture uses it.
@pytest.fixture
async def scheduler(
    autojump_clock: trio.testing.MockClock, clock: TrioClock, fake: FakeService
) -> AsyncIterator[Scheduler]:
    sched = Scheduler(clock, fake.next_wake, fake.wake_due)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        await fake.first_read.wait()  # the scheduler is asleep until its first sweep
        assert sched.target_ms is None  # nothing is due
        yield sched
        nursery.cancel_scope.cancel()


async def until(clock: TrioClock, at_ms: int) -> None:
    """Let mock time pass until the wall clock reads `at_ms`."""
    await trio.sleep_until((at_ms - clock.epoch_ms) / 1000)
    assert clock.now_ms() == at_ms


# -- the clock ----------------------------------------------------------------------------


async def test_trio_clock_follows_mock_time(autojump_clock: trio.testing.MockClock) -> None:
    clock = TrioClock(EPOCH)
    assert clock.now_ms() == EPOCH + int(trio.current_time() * 1000)
    before = clock.now_ms()
    await trio.sleep(3 * 86_400)
    assert clock.now_ms() - before == 3 * DAY_MS


# -- firing -----------------------------------------------------------------------------------


async def test_fires_exactly_at_the_due_time(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    fake.add(EPOCH + 5000)
    scheduler.note(EPOCH + 5000)
    await until(clock, EPOCH + 4999)
    assert fake.fired == []
    assert fake.wake_calls == []
    await until(clock, EPOCH + 5001)
    assert fake.fired == [(EPOCH + 5000, EPOCH + 5000)]
    assert fake.wake_calls == [EPOCH + 5000]


async def test_due_times_known_at_start_fire_in_order(
    autojump_clock: trio.testing.MockClock, clock: TrioClock, fake: FakeService
) -> None:
    for offset in (30_000, 1_000, 7_500, 7_500, 59_000):
        fake.add(EPOCH + offset)
    sched = Scheduler(clock, fake.next_wake, fake.wake_due)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        await until(clock, EPOCH + 59_500)
        nursery.cancel_scope.cancel()
    assert fake.fired == [
        (EPOCH + 1_000, EPOCH + 1_000),
        (EPOCH + 7_500, EPOCH + 7_500),
        (EPOCH + 7_500, EPOCH + 7_500),
        (EPOCH + 30_000, EPOCH + 30_000),
        (EPOCH + 59_000, EPOCH + 59_000),
    ]
    assert fake.wake_calls == [EPOCH + 1_000, EPOCH + 7_500, EPOCH + 30_000, EPOCH + 59_000]


async def test_a_due_time_already_past_fires_at_once(
    autojump_clock: trio.testing.MockClock, clock: TrioClock, fake: FakeService
) -> None:
    fake.add(EPOCH - DAY_MS)  # fell due while takod was down
    sched = Scheduler(clock, fake.next_wake, fake.wake_due)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        await until(clock, EPOCH + 1)
        nursery.cancel_scope.cancel()
    assert fake.fired == [(EPOCH - DAY_MS, EPOCH)]


async def test_note_of_an_earlier_time_wakes_it_earlier(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    fake.add(EPOCH + 50_000)
    scheduler.note(EPOCH + 50_000)
    await until(clock, EPOCH + 1_000)  # the scheduler now sleeps until +50 s
    assert scheduler.target_ms == EPOCH + 50_000
    fake.add(EPOCH + 10_000)
    scheduler.note(EPOCH + 10_000)
    assert scheduler.target_ms == EPOCH + 10_000
    await until(clock, EPOCH + 9_999)
    assert fake.fired == []
    await until(clock, EPOCH + 50_001)
    assert fake.fired == [(EPOCH + 10_000, EPOCH + 10_000), (EPOCH + 50_000, EPOCH + 50_000)]


async def test_without_a_note_an_earlier_time_waits_for_the_planned_wake(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    # the contrast to the test above: the note is what makes the timer move
    fake.add(EPOCH + 50_000)
    scheduler.note(EPOCH + 50_000)
    await until(clock, EPOCH + 1_000)
    fake.add(EPOCH + 10_000)
    await until(clock, EPOCH + 50_001)
    assert fake.fired == [(EPOCH + 10_000, EPOCH + 50_000), (EPOCH + 50_000, EPOCH + 50_000)]


async def test_note_of_a_later_time_changes_nothing(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    fake.add(EPOCH + 5_000)
    scheduler.note(EPOCH + 5_000)
    await until(clock, EPOCH + 1_000)
    fake.add(EPOCH + 20_000)
    scheduler.note(EPOCH + 20_000)
    scheduler.note(None)
    assert scheduler.target_ms == EPOCH + 5_000
    await until(clock, EPOCH + 20_001)
    assert fake.fired == [(EPOCH + 5_000, EPOCH + 5_000), (EPOCH + 20_000, EPOCH + 20_000)]


async def test_a_note_while_next_wake_is_read_is_not_lost(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    fake.add(EPOCH + 2_000)
    scheduler.note(EPOCH + 2_000)
    fake.hold_next_wake = 2  # the read that follows the wake-up at +2 s
    await fake.reading.wait()
    assert clock.now_ms() == EPOCH + 2_000
    assert fake.fired == [(EPOCH + 2_000, EPOCH + 2_000)]
    # this read has already seen nothing due; then a run parks until +3 s
    fake.add(EPOCH + 3_000)
    scheduler.note(EPOCH + 3_000)
    fake.release.set()
    await until(clock, EPOCH + 3_001)
    assert fake.fired[1:] == [(EPOCH + 3_000, EPOCH + 3_000)]


async def test_a_note_during_the_first_read_is_not_lost(
    autojump_clock: trio.testing.MockClock, clock: TrioClock, fake: FakeService
) -> None:
    fake.hold_next_wake = 1
    sched = Scheduler(clock, fake.next_wake, fake.wake_due)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sched.run)
        await fake.reading.wait()
        fake.add(EPOCH + 4_000)
        sched.note(EPOCH + 4_000)
        fake.release.set()
        await until(clock, EPOCH + 4_001)
        nursery.cancel_scope.cancel()
    assert fake.fired == [(EPOCH + 4_000, EPOCH + 4_000)]


async def test_due_times_days_away_fire_after_jumping_the_clock(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    far = EPOCH + 3 * DAY_MS + 1234
    fake.add(far)
    fake.add(far + 3_600_000)
    scheduler.note(far)
    await until(clock, far - 1)
    assert fake.fired == []
    await until(clock, far + 1)
    assert fake.fired == [(far, far)]
    await until(clock, far + 3_600_001)
    assert fake.fired[1:] == [(far + 3_600_000, far + 3_600_000)]
    assert fake.due == []


async def test_nothing_fires_when_nothing_is_due_but_the_safety_sweep(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    assert SAFETY_SWEEP == 60.0
    await until(clock, EPOCH + SWEEP_MS - 1)
    assert fake.wake_calls == []
    assert fake.next_wake_calls == 1
    await until(clock, EPOCH + SWEEP_MS + 1)
    assert fake.next_wake_calls == 2  # the sweep re-reads the next due time...
    await until(clock, EPOCH + 3 * SWEEP_MS + 1)
    assert fake.next_wake_calls == 4
    assert fake.wake_calls == []  # ...but writes nothing while nothing is due
    assert fake.fired == []


async def test_the_safety_sweep_finds_what_nobody_noted(
    autojump_clock: trio.testing.MockClock,
    clock: TrioClock,
    fake: FakeService,
    scheduler: Scheduler,
) -> None:
    await until(clock, EPOCH + 1_000)
    fake.add(EPOCH + 2_000)  # written without a note
    await until(clock, EPOCH + SWEEP_MS + 1)
    assert fake.fired == [(EPOCH + 2_000, EPOCH + SWEEP_MS)]
