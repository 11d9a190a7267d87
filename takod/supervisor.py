"""takod's composition and life cycle: builds the layers and runs them in one nursery.

The layers, each handed only what it needs (see docs/architecture.md):

    clients.py      client connections: framing, backpressure, dispatch
    access.py       the HTTP surface's operations (tokens, links, watch)
    service.py      the domain operations (start, signal, decide, ...)
    worker_link.py  each worker's connection: checkpoints, parks, finishes
    workers.py      the worker pool: spawn, assign, reap, isolate
    scheduler.py    one timer for everything that falls due
    webhook.py, notifiers.py   delivering approval events from the outbox
    storage/        the one seam to runs.db (rules in takod/rules)

This module starts them in order, stops them in order, and reloads the app's
workflows when asked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

from tako._records import NOTIFY_WORKFLOW, Registry
from tako.takod.access import Access
from tako.takod.catalog import Catalog, describe
from tako.takod.changes import Changes, EventHook
from tako.takod.clients import Clients
from tako.takod.config import AppConfig
from tako.takod.membership import FromPeers, Membership
from tako.takod.notifiers import TARGET as NOTIFIERS_TARGET
from tako.takod.notifiers import Notifiers
from tako.takod.payloads import Payloads
from tako.takod.scheduler import Clock, OffsetClock, Scheduler
from tako.takod.server import DataDirLock, open_listener
from tako.takod.service import Service
from tako.takod.storage import ApprovalEvents, Backend, open_backend, redact
from tako.takod.webhook import TARGET as WEBHOOK_TARGET
from tako.takod.webhook import Webhook
from tako.takod.worker_link import WorkerLink
from tako.takod.workers import WorkerPool

log = logging.getLogger("takod")
DEFAULT_MAX_LINE = 4 * 1024 * 1024

__all__ = ["DEFAULT_MAX_LINE", "EventHook", "Supervisor"]


class Supervisor:
    def __init__(
        self,
        app_dir: Path,
        *,
        data_dir: Path,
        socket_path: Path,
        config: AppConfig,
        clock: Clock | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        on_event: EventHook | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.config = config
        self.clock = clock or OffsetClock()  # the database's, where supervisors share one
        self.max_line = max_line
        self.db_path = data_dir / "apps" / config.name / "runs.db"
        self.catalog = Catalog()
        self.changes = Changes(on_event)
        self.events = ApprovalEvents()  # the outbox's targets and the links' signer
        self._lock = DataDirLock(data_dir)
        self.backend: Backend

    @property
    def registry(self) -> Registry:
        return self.catalog.registry

    def _build(self, backend: Backend) -> None:
        """The layers on an open store."""
        config, clock, changes = self.config, self.clock, self.changes
        self.backend = backend
        backend.on_commit = changes.metrics.committed
        payloads = Payloads(config.runs.max_payload)
        self.scheduler = Scheduler(
            clock, lambda: self.service.next_wake(), lambda now: self.service.wake_due(now)
        )
        # the pool and the timer call into layers built after them: lambdas, late-bound
        self.pool = WorkerPool(
            app_dir=self.app_dir,
            config=config,
            socket_path=self.socket_path,
            claim=lambda run_ids: self.service.claim(run_ids),
            lost=lambda run_ids, alone, why: self.service.lost(run_ids, alone, why),
            serve_worker=lambda worker: self.link.serve(worker),
        )
        self.pool.on_freed = lambda run_id: self.service.freed(run_id)
        self.link = WorkerLink(
            backend, pool=self.pool, scheduler=self.scheduler, changes=changes,
            payloads=payloads, clock=clock, catalog=self.catalog,
        )  # fmt: skip
        self.membership = Membership(
            backend, clock=clock, changes=changes, lease=config.workers.lease,
            shared=config.storage.url is not None, requeue=self.pool.enqueue,
            workers=lambda: self.pool.live, held=self.pool.held,
        )  # fmt: skip
        changes.tell = backend.tell
        self.scheduler.tell = lambda at: backend.tell("due", str(at))
        self.peers = FromPeers(self.membership, changes, self.scheduler)
        self.service = Service(
            backend, pool=self.pool, scheduler=self.scheduler, changes=changes,
            catalog=self.catalog, payloads=payloads, config=config, clock=clock,
            membership=self.membership,
        )  # fmt: skip
        self.access = Access(
            backend, settings=config.http, data_dir=self.data_dir, clock=clock, changes=changes
        )
        self.events.links = self.access.links
        url = config.storage.url
        self.clients = Clients(
            self.service, self.access, self.catalog, app=config.name,
            database=str(self.db_path) if url is None else redact(url), max_line=self.max_line,
        )  # fmt: skip
        self.notifiers = Notifiers(
            backend, clock=clock, changes=changes, run_internal=self.service.run_internal
        )
        changes.on_approvals(self.notifiers.kick)
        settings = config.approvals
        self.webhook = None
        if settings.webhook:
            secret = os.environ.get(settings.webhook_secret_env) or settings.webhook_secret
            self.webhook = Webhook(
                settings.webhook, secret, backend, clock, delivered=changes.delivered
            )
            changes.on_approvals(self.webhook.kick)

    # -- life cycle -------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._lock.acquire()
        try:
            if self.socket_path.parent == self.data_dir:
                os.chmod(self.data_dir, 0o700)
            storage = self.config.storage
            backend = open_backend(
                self.db_path, durability=storage.durability, events=self.events,
                url=storage.url, app=self.config.name,
            )  # fmt: skip
            try:
                self._build(backend)
                await self._serve(task_status)
            finally:
                backend.close()
        finally:
            with trio.CancelScope(shield=True):
                if self.socket_path.exists():
                    self.socket_path.unlink()
            self._lock.release()

    async def _serve(self, task_status: trio.TaskStatus[Supervisor]) -> None:
        await self.load_registry()
        listener = await open_listener(self.socket_path)
        async with trio.open_nursery() as outer:
            # the store outlives the rest, so that leaving is written on the way out
            writer = trio.CancelScope(shield=True)
            outer.start_soon(self._run_backend, writer)
            try:
                await self._serve_layers(listener, task_status)
            finally:
                with trio.CancelScope(shield=True):
                    await self.membership.leave()
                writer.cancel()

    async def _run_backend(self, scope: trio.CancelScope) -> None:
        with scope:
            await self.backend.run()

    async def _serve_layers(
        self, listener: trio.SocketListener, task_status: trio.TaskStatus[Supervisor]
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await self.membership.join()
                await self.service.sync_schedules()
                nursery.start_soon(self.membership.keep_alive)
                nursery.start_soon(self.backend.listen, self.peers)
                await nursery.start(self.pool.run)
                nursery.start_soon(self.scheduler.run)
                nursery.start_soon(self.service.housekeeping)
                if self.webhook is not None:
                    nursery.start_soon(self.webhook.run)
                nursery.start_soon(self.notifiers.run)
                nursery.start_soon(self._accept, listener)
                task_status.started(self)
        finally:
            await self.pool.stop()

    async def _accept(self, listener: trio.SocketListener) -> None:
        async with listener:
            await trio.serve_listeners(self.clients.serve, [listener])

    async def drain(self, grace: float | None = None) -> int:
        """Stop gracefully: assign nothing more, let steps in flight finish for up to
        `grace` seconds (`[workers] shutdown_grace`), each run released at its next
        step boundary. Returns how many runs were still in flight when time ran out;
        they resume at the next start (their step in flight runs again)."""
        self.pool.pause()
        with trio.move_on_after(self.config.workers.shutdown_grace if grace is None else grace):
            while self.pool.in_flight:
                await trio.sleep(0.02)
        return self.pool.in_flight

    async def reload(self) -> Registry:
        """Re-read the app's workflows. New and resumed runs use the new code; a worker
        in flight finishes its current steps first."""
        registry = await self.load_registry()
        await self.service.sync_schedules()
        self.pool.retire_all()
        await self.membership.sweep()
        self.changes.emit(
            "reloaded", workflows=len(registry.workflows), errors=len(registry.errors)
        )
        return registry

    async def load_registry(self) -> Registry:
        """Learn the app's workflows from a `--describe` worker: user code never loads here."""
        registry = await describe(self.app_dir)
        self.catalog.use(registry)
        for file, text in registry.output.items():
            self.changes.emit("output", file=file, text=text)
        targets: tuple[str, ...] = (WEBHOOK_TARGET,) if self.config.approvals.webhook else ()
        if NOTIFY_WORKFLOW in self.catalog.workflows:  # the app has @tako.notifier functions
            targets += (NOTIFIERS_TARGET,)
        self.events.targets = targets
        return registry
