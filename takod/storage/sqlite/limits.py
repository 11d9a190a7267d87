"""The backends' concurrency limits: a workflow with `concurrency=N` has at most N runs
running, whichever supervisor claims them, and its ready runs start in start order.

A claim that includes runs of a limited workflow takes, for that workflow, the
oldest ready runs instead of those asked for, and only as many as its free
places. On PostgreSQL a transaction-scoped advisory lock per workflow makes
two supervisors' claims of it take turns, so they cannot both see the last
free place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic

from tako.takod.storage.sqlite.approvals import ApprovalWrites, C


class LimitWrites(ApprovalWrites[C], Generic[C]):
    def within_limits(self, ids: list[str], now: int, limits: Mapping[str, int]) -> list[str]:
        """`ids` with the runs of limited workflows replaced by the ones that may run."""
        marks = ", ".join("?" * len(ids))
        workflow_of = dict(
            self.conn.execute(f"SELECT id, workflow FROM runs WHERE id IN ({marks})", ids)
        )
        limited = sorted({w for w in workflow_of.values() if w in limits})
        if not limited:
            return ids
        keep = [rid for rid in ids if workflow_of.get(rid) not in limits]
        for workflow in limited:  # sorted: supervisors take the locks in one order
            keep += self.may_run(workflow, limits[workflow], now)
        return keep

    def ready_of(self, workflow: str, now: int, limit: int) -> list[str]:
        """Up to `limit` of the workflow's ready runs, oldest first."""
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE workflow = ? AND status = 'pending'"
            " AND (wake_at IS NULL OR wake_at <= ?) ORDER BY created_at, id LIMIT ?",
            (workflow, now, limit),
        )
        return [row[0] for row in rows]

    def may_run(self, workflow: str, limit: int, now: int) -> list[str]:
        """The oldest ready runs of `workflow` that fit in its free places."""
        if self.dialect.workflow_lock:
            self.conn.execute(self.dialect.workflow_lock, (f"tako limit {workflow}",))
        (running,) = self.conn.execute(
            "SELECT COUNT(*) FROM runs WHERE workflow = ? AND status = 'running'", (workflow,)
        ).fetchone()
        room = limit - running
        return self.ready_of(workflow, now, room) if room > 0 else []
