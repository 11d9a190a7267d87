"""The statements that write a step: the checkpoint's fast path, shared by both backends.

A checkpoint is the hottest write there is, so it is one statement that checks
the claim and upserts the step together; both backends' committers run it (the
PostgreSQL one pipelined, many per round trip), and the benchmark's ceiling
runs it alone.
"""

from __future__ import annotations

from tako._protocol import StepDone
from tako.takod.storage.sqlite.portable import SQLITE, Dialect

_STEP_COLUMNS = (
    "run_id, key, name, kind, status, result, error, attempts, seq, started_at, finished_at,"
    " wake_at"
)
_STEP_CONFLICT = (
    " ON CONFLICT (run_id, key) DO UPDATE SET status = excluded.status,"
    " result = excluded.result, error = excluded.error, attempts = excluded.attempts,"
    " finished_at = excluded.finished_at, wake_at = excluded.wake_at"
)


def save_step_if_held(dialect: Dialect) -> str:
    """A checkpoint, saved only if it comes from the worker that holds the run and nobody
    asked to cancel the run: one statement. On PostgreSQL the check locks the run's row
    (`FOR SHARE`) until the commit, so that a supervisor recovering or reclaiming the run
    at the same moment either waits for this checkpoint (and its replay sees the step) or
    has already taken the run (and this checkpoint is refused): never both."""
    return (
        f"INSERT INTO steps ({_STEP_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL"
        " WHERE EXISTS (SELECT 1 FROM runs WHERE id = ? AND claim_token = ?"
        f" AND status = 'running' AND cancel_requested = 0{dialect.share})" + _STEP_CONFLICT
    )


SAVE_STEP_IF_HELD = save_step_if_held(SQLITE)  # SQLite's, for the benchmark's ceiling
UPSERT_STEP = (
    f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    + _STEP_CONFLICT
)


def save_step_params(step: StepDone, now: int) -> tuple[object, ...]:
    """The parameters of SAVE_STEP_IF_HELD for one checkpoint."""
    started, finished = step.started_at or now, step.finished_at or now
    return (
        step.run_id, step.key, step.name, step.kind, step.status, bytes(step.result),
        step.error, step.attempts, step.seq, started, finished, step.run_id, step.token,
    )  # fmt: skip
