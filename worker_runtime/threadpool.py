"""The threads that run sync step bodies, with their results handed back in batches.

A step body written as a plain function (`step.run("charge", lambda: ...)`) may
block, so it runs off the event loop. The stock ways to do that
(`run_in_executor`, `trio.to_thread.run_sync`) wake the loop once per call:
a byte written to the loop's self-pipe, a callback scheduled, a future chained
to a future. With a thousand runs each finishing a step at once, those wake-ups
were most of a step's cost (measured in the headline benchmark: sync bodies ran
at half the speed of async ones).

Here a finished thread appends its result to a deque and wakes the loop only if
no wake-up is already pending; the loop then settles every result that has
arrived in one callback. A thread is started only when no idle thread is
reserved for the job, so a body that blocks never holds up another body.

The loop-specific parts are two small callables: how to wake the loop from a
thread, and how to make a one-shot slot that a task awaits.
"""

from __future__ import annotations

import collections
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol


class ProcessExhausted(MemoryError):
    """The worker process itself ran out of a resource (memory, threads): not the step's
    fault. Handled like a MemoryError: the worker exits and takod recovers its runs."""


class Slot(Protocol):
    """Where one job's outcome lands, on the loop thread."""

    def set_result(self, value: Any) -> None: ...
    def set_exception(self, exc: BaseException) -> None: ...


_Job = tuple[Slot, contextvars.Context, Callable[[], Any]]
_Outcome = tuple[Slot, bool, Any]


class StepThreads:
    """A growing pool of daemon threads with batched completion hand-back.

    `submit` and the settling of results run on the loop thread; `_serve` runs in
    the pool's threads. The only state both sides touch is the job queue, the
    deque of outcomes, the `_pending` flag (a wake-up is on its way) and the idle
    count (under a lock).
    """

    def __init__(self, wake: Callable[[Callable[[], None]], object], limit: int) -> None:
        self._wake = wake  # schedules a callable on the loop, from any thread
        self._limit = limit
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._done: collections.deque[_Outcome] = collections.deque()
        self._pending = False
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job that no submitted job has reserved
        self._threads = 0

    def submit(self, slot: Slot, fn: Callable[[], Any]) -> None:
        """Queue `fn`; its outcome is set on `slot`, later, on the loop thread. Each job
        runs in a copy of the caller's context, as `asyncio.to_thread` does."""
        with self._lock:
            reserved = self._idle > 0
            if reserved:
                self._idle -= 1
        if not reserved and self._threads < self._limit:
            try:
                threading.Thread(target=self._serve, name="step", daemon=True).start()
            except RuntimeError as exc:  # no thread could be started
                raise ProcessExhausted(str(exc)) from exc
            self._threads += 1
        self._jobs.put((slot, contextvars.copy_context(), fn))

    def _serve(self) -> None:
        jobs, done = self._jobs, self._done
        while True:
            slot, context, fn = jobs.get()
            try:
                outcome: _Outcome = (slot, True, context.run(fn))
            except BaseException as exc:  # the step's own failure, reported to its task
                outcome = (slot, False, exc)
            done.append(outcome)
            del slot, context, fn, outcome  # keep no reference while idle
            if not self._pending:
                # Set before waking: a thread that finishes now sees it and stays quiet,
                # and `_settle` clears it before it drains, so nothing is left behind.
                self._pending = True
                try:
                    self._wake(self._settle)
                except RuntimeError:  # the loop is closed: the worker is exiting
                    return
            with self._lock:
                self._idle += 1

    def _settle(self) -> None:
        self._pending = False
        done = self._done
        while done:
            slot, ok, value = done.popleft()
            try:
                if ok:
                    slot.set_result(value)
                else:
                    slot.set_exception(value)
            except Exception:  # the waiting task was cancelled: its slot is closed
                pass
