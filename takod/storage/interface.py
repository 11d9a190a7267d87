"""The storage seam: what takod asks of a backend, in domain verbs and wire types.

Everything above this seam (the service, the worker link, deliveries, the
CLI's offline reads) speaks these verbs and never holds a connection or a
line of SQL. A backend implements three things:

- `Tx`: the writes, each run inside a transaction the backend opens for a
  whole batch (group commit). A verb that raises leaves nothing behind: the
  backend undoes it (a savepoint) without undoing its neighbours in the batch.
- `Reads`: the read views, returning the objects clients receive.
- `Backend`: queues writes into batches (`submit`, `write`), runs reads off
  the event loop (`read`), and lives as long as the supervisor (`run`).

The rules (what a park becomes, how a decision counts, when a run retries)
live in `takod.rules`: a backend fetches the facts, asks the rules, and
writes what they decided; it never decides itself.

Times are integer milliseconds since the epoch, always given by the caller
(takod's one clock): no verb reads a clock of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from enum import StrEnum
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import msgspec

from tako._errors import StorageError, TakoError
from tako._protocol import Assign, Finish, Keyed, Park, StepDone
from tako._records import ApprovalView, RunStatus, RunView
from tako._replies import ScheduleRow, SupervisorRow, TokenRow
from tako.takod.rules.runs import Outcome

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

SchemaCheck = Callable[[str, bytes], str | None]  # (JSON Schema text, payload) -> problem
Hold = Callable[[str], str | None]  # workflow -> why its runs cannot start now, or None
# (key, approvers, deadline_at, created_at) -> {approver: {"view", "approve", "reject"}}
Links = Callable[[str, list[str] | None, int | None, int], dict[str, dict[str, str]]]
WAKE_BATCH = 2000  # sleepers woken per transaction


class StoreError(TakoError):
    """The store cannot be used (not a tako database, a newer schema, ...)."""

    code = "storage"


class DatabaseUnavailable(StorageError):
    """The database cannot be reached; nothing was written. The supervisor keeps
    answering, and resumes by itself once the database is back."""

    code = "unavailable"


class TokenNotFound(TakoError):
    """No token with that name exists."""

    code = "not_found"


# -- what the verbs take and return -------------------------------------------------------


class StoreCounts(NamedTuple):
    """What `GET /metrics` reads from the store when scraped."""

    runs: dict[tuple[str, str], int]  # (workflow, status) -> runs
    approvals_pending: int
    approvals_overdue: int  # pending, and a reminder or an escalation has fired
    outbox_backlog: int  # events not yet delivered


class NewRun(NamedTuple):
    workflow: str
    payload: bytes
    max_attempts: int
    run_id: str | None = None
    delay_ms: int | None = None
    timeout_ms: int | None = None
    traceparent: str | None = None
    parent_run_id: str | None = None  # a child run's parent
    parent_step: str | None = None  # the parent's step waiting for it (step.invoke)


class ScheduleSpec(NamedTuple):
    """A scheduled workflow as the app now defines it."""

    workflow: str
    expression: str
    timezone: str
    catch_up: str
    max_attempts: int
    timeout_ms: int | None


class Limits(NamedTuple):
    """The app's concurrency limits: runs of a workflow, runs per key of a workflow."""

    workflows: Mapping[str, int]
    keys: Mapping[str, int]

    def __bool__(self) -> bool:
        return bool(self.workflows or self.keys)


class Created(NamedTuple):
    run_id: str
    status: str
    deduplicated: bool


class StepSaved(StrEnum):
    """What became of a checkpoint: saved, or the run stops here (cancelled, or given
    back to the queue because the supervisor is stopping)."""

    SAVED = "saved"
    CANCELLED = "cancelled"
    RELEASED = "released"


class ParkOutcome(StrEnum):
    PARKED = "parked"  # the run waits; its worker drops it
    GO_ON = "go_on"  # nothing to wait for: `result` is the step's result
    CANCELLED = "cancelled"  # a cancel was requested: the run ends here


class Parked(NamedTuple):
    outcome: ParkOutcome
    result: bytes | None = None
    started: str | None = None  # a child run this park created, ready to run


class Delivered(NamedTuple):
    """A signal: the runs it resumed, and whether it was kept for a later waiter."""

    woken: list[str]
    kept: bool


class Requeued(NamedTuple):
    """After a worker died: runs back in the queue, runs failed for good."""

    requeued: list[str]
    failed: list[str]


class Due(NamedTuple):
    """What the timer moved on: runs now ready, and (run, error) for runs that failed."""

    ready: list[str]
    failed: list[tuple[str, str]]


class Ask(msgspec.Struct, kw_only=True):
    """One decision on an approval request."""

    action: str  # "approve" | "reject" | "cancel"
    key: str
    by: str
    value: bytes | None = None  # an edited value (approve only)
    reason: str | None = None
    decision_id: str | None = None
    seen: str | None = None  # the digest of the value the decider was shown


class OutboxEvent(NamedTuple):
    event_id: str
    body: bytes
    attempts: int


class LinkFields(NamedTuple):
    """What a request's signed links are made of."""

    approvers: list[str] | None
    deadline_at: int | None
    created_at: int


class Identity(NamedTuple):
    name: str
    scopes: list[str]


class ApprovalEvents:
    """Where approval events go (the outbox's targets: "webhook", "notifiers"; none:
    no outbox) and who signs the links they carry. Set by the supervisor, read by the
    backend inside the transaction that changes a request."""

    def __init__(self, targets: tuple[str, ...] = (), links: Links | None = None) -> None:
        self.targets = targets
        self.links = links


# -- the seam -------------------------------------------------------------------------------


class Tx(Protocol):
    """The writes. Each runs inside the batch's transaction; see the module docstring."""

    # runs
    def create_run(self, new: NewRun, now: int) -> Created:
        """Insert a pending run, or find the run with that id (deduplicated)."""

    def claim(
        self,
        run_ids: Sequence[str],
        now: int,
        hold: Hold | None = None,
        owner: int | None = None,
        limits: Limits | None = None,
    ) -> list[Assign]:
        """Mark ready runs running under a new fencing token, held by the supervisor
        `owner`; return them with their memos. Runs whose workflow `hold` refuses stay
        pending with its reason. For a workflow in `limits` (its concurrency), the oldest
        ready runs of it are taken, in place of those asked for, and only as many as
        leave at most that many running."""

    def sync_schedules(self, specs: Sequence[ScheduleSpec], now: int, *, complete: bool) -> None:
        """Make the stored cron schedules the app's (see sqlite/schedules.py)."""

    def keyed(self, req: Keyed, now: int, limits: Mapping[str, int]) -> bool:
        """Record a run's concurrency key; False when its key is full (the run goes back
        to pending, its claim revoked, to start when a place frees)."""

    def ready_of(self, workflow: str, now: int, limit: int) -> list[str]:
        """Up to `limit` ready runs of `workflow`, oldest first."""

    def save_step(self, step: StepDone, now: int, release: bool = False) -> StepSaved:
        """Checkpoint a finished step if the worker still holds the run (else StaleClaim)."""

    def park(self, park: Park, now: int, check: SchemaCheck, child: NewRun | None = None) -> Parked:
        """Park a run on a sleep, a signal, an approval, a retry backoff or a child run
        (`child`: the run to start, made by takod from `park.child`)."""

    def finish(self, finish: Finish, now: int) -> Outcome:
        """The handler ended: retry with backoff, or finish the run."""

    def requeue_lost(
        self, run_ids: Sequence[str], *, alone: bool, reason: str, now: int
    ) -> Requeued:
        """A worker went away holding these runs: requeue them, or fail those charged
        their last attempt (`takod.rules.runs.on_worker_crash`)."""

    def release(self, run_id: str, token: int, now: int) -> None:
        """Give a run back to the queue, uncharged (the supervisor is stopping)."""

    def recover(self, now: int, lease_ms: int | None = None) -> list[str]:
        """Runs held by a supervisor that is gone go back to pending; returns them. With
        `lease_ms` None every running run is, and every supervisor that joined before
        `now` is forgotten (one supervisor owns the store, and it is starting); else
        those whose supervisor was silent for `lease_ms`, and such supervisors are
        forgotten."""

    def release_orphans(
        self, owner: int, held: Collection[str], claimed_before: int, now: int
    ) -> list[str]:
        """Runs `owner` claimed before `claimed_before` and no longer holds in memory (a
        write for them failed while the database was away) go back to pending."""

    def join(self, host: str, pid: int, now: int) -> int:
        """Register a supervisor serving the app; returns its id (the owner of its claims)."""

    def heartbeat(self, supervisor: int, workers: int, now: int) -> bool:
        """Renew a supervisor's lease; False when it was declared gone meanwhile."""

    def leave(self, supervisor: int) -> None:
        """A supervisor stops: it drops off the list at once."""

    def ready_runs(self, now: int, limit: int = 100_000) -> list[str]:
        """QueuedWrite runs that may start now, oldest first."""

    def cancel(self, run_id: str, reason: str | None, now: int) -> RunStatus:
        """Cancel a run (a running one at its next step boundary); returns its status."""

    def retry(self, run_id: str, now: int, timeout_ms: int | None = None) -> None:
        """Re-queue a failed or cancelled run; its finished steps stay."""

    def signal(
        self,
        event: str,
        payload: bytes,
        *,
        run_id: str | None,
        ttl_ms: int,
        now: int,
        check: SchemaCheck,
    ) -> Delivered:
        """Resume every run waiting for `event` (or the one run); keep it when none does."""

    def wake_due(self, now: int, limit: int = WAKE_BATCH) -> Due:
        """Sleeps end, waits time out, deadlines fail, approval timers fire."""

    def prune(self, before: int) -> int:
        """Delete runs finished before `before`, and expired kept signals."""

    def expire_signals(self, now: int) -> None: ...

    # approvals
    def decide(self, ask: Ask, now: int, check: SchemaCheck) -> str | None:
        """Apply one decision; returns the run to resume when it settled the request."""

    def take_events(self, target: str, now: int, lease_ms: int) -> list[OutboxEvent]:
        """Per request, its oldest undelivered event to `target` that is due, taken for
        `lease_ms` (another supervisor skips it meanwhile; a deliverer that dies lets it
        fall due again)."""

    def mark_delivered(self, target: str, event_id: str, now: int) -> None: ...

    def mark_failed(self, target: str, event_id: str, error: str, next_at: int) -> None: ...

    # API tokens
    def create_token(self, name: str, scopes: Sequence[str], now: int) -> str:
        """Store a new token; returns the token itself (the only time it exists)."""

    def revoke_token(self, name: str) -> None: ...


class Reads(Protocol):
    """The read views. They may lag the writes by one batch, never more."""

    def run(self, run_id: str, *, steps: bool = True) -> RunView: ...

    def runs(self, *, status: str | None, workflow: str | None, limit: int) -> list[RunView]: ...

    def counts(self) -> dict[str, int]: ...

    def store_counts(self) -> StoreCounts: ...

    def busy(self, now: int, limit: int = 10) -> list[str]:
        """Up to `limit` runs that are running, or pending and due by `now`."""

    def next_wake(self) -> int | None:
        """The earliest moment anything is due (a wake-up, a timeout, a deadline, an
        approval timer)."""

    def approval(self, key: str) -> ApprovalView: ...

    def approvals(
        self,
        *,
        approver: str | None = None,
        workflow: str | None = None,
        status: str | None = "pending",
        run_id: str | None = None,
        limit: int = 100,
    ) -> list[ApprovalView]: ...

    def link_fields(self, key: str) -> LinkFields: ...

    def due_events(self, target: str, now: int) -> list[OutboxEvent]:
        """Per request, its oldest undelivered event to `target`, if due."""

    def next_attempt(self, target: str) -> int | None: ...

    def tokens(self) -> list[TokenRow]: ...

    def supervisors(self, now: int, lease_ms: int) -> list[SupervisorRow]:
        """The supervisors whose heartbeat is younger than `lease_ms`, oldest first."""

    def token_count(self) -> int: ...

    def schedules(self) -> list[ScheduleRow]:
        """The cron schedules, the next due first."""

    def identify(self, token: str) -> Identity:
        """Who `token` is; Unauthorized when it matches none."""


class Peers(Protocol):
    """What the other supervisors on a shared store tell this one (see `Backend.listen`)."""

    def run_changed(self, run_id: str) -> None: ...

    def due(self, at: int) -> None: ...

    def ready(self) -> None: ...

    def approvals_changed(self) -> None: ...

    def missed(self) -> None:
        """Notices may have been lost (the connection dropped): read everything again."""


class Sink(Protocol):
    """Where an early answer is written from the writer thread (a worker's connection)."""

    def send_threadsafe(self, data: bytes) -> None: ...


class QueuedWrite(Generic[T]):
    """One queued write: what to run, then (after the commit) its result or error."""

    __slots__ = ("answered", "atomic", "checkpoint", "early", "error", "fn", "on_done", "result")

    def __init__(
        self,
        fn: Callable[[Tx], T],
        on_done: Callable[[QueuedWrite[T]], None],
        atomic: bool = False,
        early: Early | None = None,
        checkpoint: tuple[StepDone, int] | None = None,
    ) -> None:
        self.fn = fn
        # `fn` is `tx.save_step(step, now)`: a backend may write many such in one go
        self.checkpoint = checkpoint
        self.on_done = on_done
        self.atomic = atomic  # fn leaves nothing half-written when it raises: no savepoint
        self.early = early  # runs on the writer thread right after the commit
        self.answered = False  # `early` answered already
        self.result: T | None = None
        self.error: BaseException | None = None

    def value(self) -> T:
        """The committed result (call only when `error` is None)."""
        return self.result  # type: ignore[return-value]


Early = Callable[[QueuedWrite[Any]], tuple[Sink, bytes] | None]


class Backend(Protocol):
    events: ApprovalEvents
    # called on the writer thread after each commit: (writes, step checkpoints) in it
    on_commit: Callable[[int, int], None]

    def submit(
        self,
        fn: Callable[[Tx], T],
        on_done: Callable[[QueuedWrite[T]], None],
        *,
        atomic: bool = False,
        early: Early | None = None,
        checkpoint: tuple[StepDone, int] | None = None,
    ) -> QueuedWrite[T]:
        """Queue `fn(tx)` for the next batch; `on_done(item)` runs in trio after the
        commit. `atomic`: fn is atomic by itself (spares a savepoint). `early(item)`
        runs on the writer thread as soon as the batch is committed and may answer
        a sink at once (a checkpoint's acknowledgement). `checkpoint=(step, now)`
        says `fn` is `tx.save_step(step, now)`, so that a backend whose round trips
        are dear may write a batch's checkpoints in one."""

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """`fn(tx)` in the next batch; returns once it is committed."""

    async def read(self, fn: Callable[[Reads], T]) -> T:
        """`fn(reads)` off the event loop."""

    async def run(self) -> None:
        """The writer's life: until cancelled, then every queued write is committed."""

    def tell(self, kind: str, arg: str = "") -> None:
        """Tell the other supervisors on this store: "run" (id), "due" (ms), "ready",
        "approvals". Nothing where there are none."""

    async def listen(self, peers: Peers) -> None:
        """Hand what the other supervisors tell to `peers`, until cancelled."""

    async def database_time(self) -> int | None:
        """The database's clock (ms), where several supervisors share it; else None."""

    def close(self) -> None: ...
