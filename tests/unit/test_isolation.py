"""The worker pool's isolation policy, with real worker processes that the test kills.

The policy (takod.workers): a run in flight in two crashes in a row next runs on a
worker of its own; a run is charged an attempt only when it crashes a worker alone;
its innocent neighbours are requeued free. The pool is driven here through its own
interface: the service's side (claim, requeue after a crash: takod.service, writing
through the storage backend) is played by the test,
which records every claim and every crash report the pool makes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import trio

from tako._protocol import Assign, Beat, Hello, decode_request, ok
from tako.takod.config import AppConfig, WorkerSettings
from tako.takod.workers import WorkerPool, WorkerProc
from tests.conftest import eventually

HOLD = """
import asyncio
from tako import workflow

@workflow
async def hold(payload, step):
    await asyncio.sleep(3600)  # in flight until the test kills its worker
"""


class Service:
    """The supervisor's side of the pool (takod.service.Service), as the test plays it:
    every run claimed is assigned, every run a crash leaves behind is requeued, and both
    are recorded."""

    def __init__(self) -> None:
        self.claims: list[list[str]] = []
        self.crashes: list[tuple[list[str], bool]] = []  # (runs held, charged: crashed alone)
        self._token = 0

    async def claim(self, run_ids: list[str]) -> list[Assign]:
        await trio.lowlevel.checkpoint()  # a write through the storage backend, in takod
        self.claims.append(list(run_ids))
        assigns = []
        for rid in run_ids:
            self._token += 1
            raw = msgspec.Raw(b"null")
            assigns.append(Assign(rid, "hold", raw, attempt=1, token=self._token, memo=[]))
        return assigns

    async def lost(self, run_ids: list[str], alone: bool, reason: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        self.crashes.append((list(run_ids), alone))
        return list(run_ids)


@asynccontextmanager
async def pool(tmp_path: Path, concurrency: int) -> AsyncIterator[tuple[WorkerPool, Service]]:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "hold.py").write_text(HOLD)
    (tmp_path / "tako.toml").write_text('name = "isolation"\n')
    service = Service()
    settings = WorkerSettings(concurrency=concurrency, idle_timeout=3600, lease=3600)

    async def serve_worker(worker: WorkerProc) -> None:
        """Just enough of takod's side of a worker's connection: hellos and beats."""
        async for line in worker.channel.lines():
            assert isinstance(line, bytes)
            worker.last_seen = trio.current_time()
            req = decode_request(line)
            if isinstance(req, Hello):
                worker.ready = True
                p.kick()
            if isinstance(req, Hello | Beat):
                worker.channel.send(ok(req.id))

    p = WorkerPool(
        app_dir=tmp_path,
        config=AppConfig(name="isolation", workers=settings),
        socket_path=tmp_path / "unused.sock",
        claim=service.claim,
        lost=service.lost,
        serve_worker=serve_worker,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(p.run)
        try:
            yield p, service
        finally:
            await p.stop()
            nursery.cancel_scope.cancel()


def holding(p: WorkerPool, *run_ids: str) -> WorkerProc | None:
    """The one live worker, once it holds exactly these runs (claimed and sent)."""
    live = [w for w in p.workers.values() if w.process.returncode is None]
    held = live[0].in_flight if len(live) == 1 else {}
    return live[0] if sorted(held) == sorted(run_ids) and all(held.values()) else None


async def crash(p: WorkerPool, service: Service, *run_ids: str) -> None:
    """SIGKILL the worker holding exactly `run_ids`, and wait for the pool's report."""
    worker = await eventually(lambda: holding(p, *run_ids), what=f"a worker holding {run_ids}")
    reports = len(service.crashes)
    os.kill(worker.process.pid, signal.SIGKILL)
    await eventually(lambda: len(service.crashes) > reports, what="the crash to be reported")


async def test_only_a_run_in_two_crashes_in_a_row_is_isolated_and_only_alone_charged(
    tmp_path: Path,
) -> None:
    async with pool(tmp_path, concurrency=2) as (p, service):
        p.enqueue(["a", "b"])
        await crash(p, service, "a", "b")  # 1st crash: a and b, both suspects now
        worker = await eventually(lambda: holding(p, "a", "b"), what="a and b to run again")
        assert not worker.exclusive  # one crash isolates nobody
        p.finished(worker, "b")  # b completes: no longer a suspect
        p.enqueue(["c"])
        await crash(p, service, "a", "c")  # 2nd crash in a row for a; c's first
        worker = await eventually(lambda: holding(p, "a"), what="a to run alone")
        assert worker.exclusive and p.isolated == {"a"}
        await crash(p, service, "a")  # a crashes a worker of its own: now it is charged
        worker = await eventually(lambda: holding(p, "c"), what="c to run again")
        assert p.isolated == {"a"} and not worker.exclusive
        p.finished(worker, "c")
        worker = await eventually(lambda: holding(p, "a"), what="a to run alone again")
        assert worker.exclusive
        p.finished(worker, "a")
        assert p.isolated == frozenset()
    assert service.claims == [["a", "b"], ["a", "b"], ["c"], ["a"], ["c"], ["a"]]
    assert service.crashes == [
        (["a", "b"], False),
        (["a", "c"], False),  # innocent c is not charged, though it crashed with a
        (["a"], True),
    ]


async def test_innocent_neighbours_in_two_crashes_are_isolated_but_never_charged(
    tmp_path: Path,
) -> None:
    async with pool(tmp_path, concurrency=3) as (p, service):
        p.enqueue(["a", "b", "c"])
        await crash(p, service, "a", "b", "c")
        await crash(p, service, "a", "b", "c")  # no telling the poison apart: each runs alone
        await crash(p, service, "a")  # a was the poison
        worker = await eventually(lambda: holding(p, "b"), what="b to run alone")
        assert worker.exclusive
        p.finished(worker, "b")
        worker = await eventually(lambda: holding(p, "c"), what="c to run alone")
        assert worker.exclusive
        p.finished(worker, "c")
        worker = await eventually(lambda: holding(p, "a"), what="a to run alone")
        p.finished(worker, "a")
    assert service.claims == [["a", "b", "c"], ["a", "b", "c"], ["a"], ["b"], ["c"], ["a"]]
    assert service.crashes == [(["a", "b", "c"], False), (["a", "b", "c"], False), (["a"], True)]
