"""Worker processes: spawned when runs are ready, fed by push, reaped when they exit.

A worker is a `python -m tako.worker_runtime` subprocess holding one end of a
socket pair. takod assigns it ready runs (with their memo) up to its
concurrency. When a worker exits, for whatever reason, the runs it held go
back to the queue at once. A run that was in flight in two crashes in a row
is next given a worker of its own; only a run that crashes a worker alone is
charged an attempt, so innocent neighbours never pay for a poison run.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from tako._errors import StorageError
from tako._protocol import Assign, encode
from tako.takod.config import AppConfig
from tako.takod.connection import Connection

log = logging.getLogger("takod")
_MAX_LINE = 64 * 1024 * 1024
EXIT_OUT_OF_MEMORY = 86  # worker_runtime.step.EXIT_OUT_OF_MEMORY (not imported: user-code side)


def describe_exit(code: int | None) -> str:
    """How a worker died, in words a person can act on."""
    if code is None:
        return "worker connection lost"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"worker crashed: killed by {name}{hint}"
    if code == EXIT_OUT_OF_MEMORY:
        return "worker crashed: out of memory (MemoryError in a step)"
    return f"worker crashed: exited with code {code}"


class WorkerProc:
    def __init__(self, wid: int, process: trio.Process, conn: Connection, capacity: int) -> None:
        self.id = wid
        self.process = process
        self.channel = conn  # the worker's end of the socketpair, framed
        self.capacity = capacity
        self.in_flight: dict[str, int] = {}  # run id -> claim token
        self.reserved = 0  # places held for runs a write is about to wake (Slots)
        self.ready = False  # said hello
        self.leaving = False
        self.exclusive = False  # running one suspect run alone
        self.retired = False  # runs old code: takes nothing new, exits once its runs leave
        self.expired = False  # went silent past its lease: fenced, its runs given to others
        self.last_seen = trio.current_time()

    @property
    def free(self) -> int:
        if not self.ready or self.leaving or self.exclusive or self.retired or self.expired:
            return 0
        return self.capacity - len(self.in_flight) - self.reserved


class Slots:
    """Free places on a warm worker, held while a write that wakes runs commits, so the
    runs it wakes are claimed in that same transaction (see `Supervisor.write_waking`)."""

    __slots__ = ("count", "worker")

    def __init__(self, worker: WorkerProc, count: int) -> None:
        self.worker = worker
        self.count = count


Claim = Callable[[list[str]], Awaitable[list[Assign]]]
# (runs, alone, reason) -> the runs requeued: a worker went away holding runs (it died,
# its lease ran out, or it exited on its own)
Lost = Callable[[list[str], bool, str], Awaitable[list[str]]]


class WorkerPool:
    def __init__(
        self,
        *,
        app_dir: Path,
        config: AppConfig,
        socket_path: Path,
        claim: Claim,
        lost: Lost,
        serve_worker: Callable[[WorkerProc], Awaitable[None]],
    ) -> None:
        self.app_dir = app_dir
        self.config = config
        self.socket_path = socket_path
        self._claim = claim
        self._lost = lost
        self._serve_worker = serve_worker
        self.workers: dict[int, WorkerProc] = {}
        # told when a run leaves its worker: a concurrency limit may let another start
        self.on_freed: Callable[[str], None] = lambda run_id: None
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._suspects: set[str] = set()  # runs in flight in the last crash
        self._isolate: set[str] = set()  # runs in flight in two crashes in a row
        self._kick = trio.Event()
        self._next_id = 0
        self._boot_failures = 0
        self.stopping = False
        self.paused = False
        self._nursery: trio.Nursery | None = None

    # -- the queue ----------------------------------------------------------------

    def enqueue(self, run_ids: list[str]) -> None:
        for rid in run_ids:
            if rid not in self._queued:
                self._queued.add(rid)
                self._queue.append(rid)
        if run_ids:
            self._kick.set()

    def kick(self) -> None:
        self._kick.set()

    def reserve(self, want: int) -> Slots | None:
        """Hold up to `want` places on the warm worker with the most room, or None when
        there is none (or runs are already queued: they go first)."""
        if self.paused or self._queue or want <= 0:
            return None
        worker = max(self.workers.values(), key=lambda w: w.free, default=None)
        if worker is None or worker.free <= 0:
            return None
        slots = Slots(worker, min(want, worker.free))
        worker.reserved += slots.count
        return slots

    def unreserve(self, slots: Slots) -> None:
        slots.worker.reserved -= slots.count
        slots.count = 0
        if self._queue:
            self._kick.set()

    @property
    def isolated(self) -> frozenset[str]:
        """Runs that must run alone: never claimed into reserved places."""
        return frozenset(self._isolate)

    def hand_over(self, slots: Slots, assigns: list[Assign]) -> None:
        """Send runs claimed into `slots` to their worker, and free the rest of the places.
        Synchronous, so a cancelled caller cannot strand a claimed run."""
        worker = slots.worker
        self.unreserve(slots)
        if not assigns:
            return
        if worker.channel.closed or worker.expired or worker.id not in self.workers:
            run_ids = [a.run_id for a in assigns]
            assert self._nursery is not None
            self._nursery.start_soon(self._requeue_lost, run_ids)
            return
        for a in assigns:
            worker.in_flight[a.run_id] = a.token
            worker.channel.send(encode(a) + b"\n")

    async def _requeue_lost(self, run_ids: list[str]) -> None:
        while True:
            try:
                self.enqueue(await self._lost(run_ids, False, "worker exited"))
                return
            except StorageError as exc:  # a full disk: the runs stay claimed until it passes
                log.warning("could not requeue runs of a lost worker (%s); retrying", exc)
                await trio.sleep(1)

    @property
    def live(self) -> int:
        return len(self.workers)

    def retire_all(self) -> None:
        """After a reload: current workers finish what they hold, then exit; new ones start."""
        for worker in self.workers.values():
            worker.retired = True
            self._release_if_done(worker)
        self._kick.set()

    def _release_if_done(self, worker: WorkerProc) -> None:
        if worker.expired:
            return  # keep its connection: its late writes must be seen, and refused
        if worker.retired and not worker.in_flight and self._nursery is not None:
            self._nursery.start_soon(worker.channel.aclose)  # the worker sees EOF and exits

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_leases)
            task_status.started()
            while True:
                await self._kick.wait()
                self._kick = trio.Event()
                if not self.paused:
                    await self._dispatch()

    def pause(self) -> None:
        """Assign nothing more (the supervisor is stopping)."""
        self.paused = True

    def held(self) -> set[str]:
        """The runs this pool's workers hold now."""
        return {rid for w in self.workers.values() for rid in w.in_flight}

    @property
    def queued(self) -> int:
        """Runs ready and waiting for a place in a worker."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return sum(len(w.in_flight) for w in self.workers.values())

    async def _watch_leases(self) -> None:
        """A worker that holds runs but has said nothing for a lease loses them.

        Its runs go back to the queue under new claim tokens, so whatever it
        writes if it ever wakes up (SIGSTOP, a frozen VM) is refused. What it
        sent that we have not read yet counts as heard: when takod itself was
        the one frozen, its workers' heartbeats wait in their sockets."""
        lease = self.config.workers.lease
        while True:
            await trio.sleep(lease / 4)
            now = trio.current_time()
            for worker in list(self.workers.values()):
                if worker.in_flight and not worker.expired and worker.last_seen < now - lease:
                    if worker.channel.unread():
                        worker.last_seen = now
                        continue
                    worker.expired = True
                    held = [rid for rid, token in worker.in_flight.items() if token]
                    worker.in_flight.clear()
                    reason = f"worker pid {worker.process.pid} silent for over {lease:g}s"
                    requeued = await self._lost(held, False, reason)
                    self.enqueue(requeued)

    async def _dispatch(self) -> None:
        while self._queue:
            current = [w for w in self.workers.values() if not (w.retired or w.expired)]
            worker = max(current, key=lambda w: w.free, default=None)
            if worker is None or worker.free == 0:
                booting = any(not w.ready for w in current)
                held = any(w.reserved for w in current)  # about to be given back: wait
                if not (booting or held) and len(current) < self.config.workers.max_workers:
                    await self._spawn()
                return
            batch: list[str] = []
            if self._queue[0] in self._isolate:
                if worker.in_flight:
                    return  # wait for an empty worker
                worker.exclusive = True
                batch.append(self._take())
            else:
                while self._queue and len(batch) < worker.free:
                    if self._queue[0] in self._isolate:
                        break
                    batch.append(self._take())
            for rid in batch:  # reserve the slots now: a worker asking to leave is refused
                worker.in_flight[rid] = 0
            try:
                assigns = await self._claim(batch)
            except StorageError as exc:
                refused: StorageError | None = exc
                assigns = []
            else:
                refused = None
            for rid in batch:
                if worker.in_flight.get(rid) == 0:
                    del worker.in_flight[rid]
            if refused is not None:  # a full disk: keep the runs queued, try again soon
                log.warning("could not claim ready runs (%s); retrying in 1s", refused)
                worker.exclusive = worker.exclusive and bool(worker.in_flight)
                self._queue.extendleft(reversed(batch))
                self._queued.update(batch)
                self._retry_soon()
                return
            if worker.channel.closed or worker.id not in self.workers:
                requeued = await self._lost([a.run_id for a in assigns], False, "worker exited")
                self.enqueue(requeued)
                continue
            for a in assigns:
                worker.in_flight[a.run_id] = a.token
                worker.channel.send(encode(a) + b"\n")
            if not assigns and worker.exclusive:
                worker.exclusive = False

    def _retry_soon(self) -> None:
        async def later() -> None:
            await trio.sleep(1)
            self._kick.set()

        assert self._nursery is not None
        self._nursery.start_soon(later)

    def _take(self) -> str:
        rid = self._queue.popleft()
        self._queued.discard(rid)
        return rid

    # -- processes ----------------------------------------------------------------

    async def _spawn(self) -> None:
        assert self._nursery is not None
        if self._boot_failures:
            await trio.sleep(min(30.0, 0.25 * 2**self._boot_failures))
        self._next_id += 1
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ, TAKO_SOCKET=str(self.socket_path), TAKO_WORKER="1")
        settings = self.config.workers
        argv = [
            sys.executable,
            "-P",  # the current folder must not shadow installed packages (a `tako/` clone here)
            "-m",
            "tako.worker_runtime",
            str(self.app_dir),
            "--fd",
            str(child.fileno()),
            "--runtime",
            settings.runtime,
            "--idle-timeout",
            str(settings.idle_timeout),
            "--max-payload",
            str(self.config.runs.max_payload),
            "--lease",
            str(settings.lease),
        ]
        try:
            # a session of its own: Ctrl-C in the `tako dev` terminal stops takod, which then
            # stops its workers in order, instead of the terminal killing them mid-step
            process = await trio.lowlevel.open_process(
                argv, pass_fds=(child.fileno(),), env=env, start_new_session=True
            )
        finally:
            child.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(parent))
        worker = WorkerProc(
            self._next_id,
            process,
            Connection(stream, max_line=_MAX_LINE),
            settings.concurrency,
        )
        self.workers[worker.id] = worker
        self._nursery.start_soon(self._watch, worker)

    async def _watch(self, worker: WorkerProc) -> None:
        """Serve a worker until its connection closes or it exits, then clean up after it."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.channel.write_loop)

            async def wait_exit() -> None:
                await worker.process.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait_exit)
            await self._serve_worker(worker)
            # the connection closed: give the process a moment to exit on its own
            with trio.move_on_after(2):
                await worker.process.wait()
            nursery.cancel_scope.cancel()
        if worker.process.returncode is None:
            worker.process.kill()
            with trio.CancelScope(shield=True):
                await worker.process.wait()
        await self._reap(worker)

    async def _reap(self, worker: WorkerProc) -> None:
        self.workers.pop(worker.id, None)
        with trio.CancelScope(shield=True):
            await worker.channel.aclose()
        code = worker.process.returncode
        if not worker.ready:
            self._boot_failures += 1
        else:
            self._boot_failures = 0
        held = list(worker.in_flight)
        if held and not self.stopping:  # when stopping, the next start-up recovers them
            crashed = not (worker.leaving and code == 0)
            alone = crashed and len(held) == 1 and (worker.exclusive or held[0] in self._suspects)
            if crashed:
                self._isolate.update(rid for rid in held if rid in self._suspects)
                self._suspects = set(held)
            with trio.CancelScope(shield=True):
                reason = describe_exit(code) if crashed else "worker exited"
                requeued = await self._lost(held, alone, reason)
            for rid in held:
                if rid not in requeued:
                    self._isolate.discard(rid)
            self.enqueue(requeued)
        self._kick.set()

    def finished(self, worker: WorkerProc, run_id: str) -> None:
        """A run left this worker (finished or parked): free its slot."""
        worker.in_flight.pop(run_id, None)
        self.on_freed(run_id)
        self._isolate.discard(run_id)
        self._suspects.discard(run_id)
        if worker.exclusive and not worker.in_flight:
            worker.exclusive = False
        self._release_if_done(worker)
        if self._queue:
            self._kick.set()

    async def stop(self, wait: float = 2.0) -> None:
        """Close every worker's connection, so each exits at once (its runs are recovered
        on restart); kill any still there after `wait` seconds, and reap them all."""
        self.stopping = True
        with trio.CancelScope(shield=True):
            workers = list(self.workers.values())
            for worker in workers:
                await worker.channel.aclose()
            with trio.move_on_after(wait):
                for worker in workers:
                    await worker.process.wait()
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.kill()
                    await worker.process.wait()
