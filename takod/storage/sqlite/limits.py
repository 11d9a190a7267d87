"""The backends' concurrency limits: a workflow with `concurrency=N` has at most N runs
running, and with `key=..., key_concurrency=M` at most M per key, whichever
supervisor claims them; its ready runs start in start order.

A claim that includes runs of a limited workflow takes, for that workflow, the
oldest ready runs instead of those asked for, and only as many as its free
places (per key, for runs whose key is known). A run's key is computed by the
worker from its payload (user code never runs in takod) the first time it
starts: `keyed` records it and sends the run back to pending if its key is
full. On PostgreSQL a transaction-scoped advisory lock per workflow makes two
supervisors' claims of it take turns, so they cannot both see the last place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic

from tako._errors import StaleClaim
from tako._protocol import Keyed
from tako.takod.storage.interface import Limits
from tako.takod.storage.sqlite.approvals import ApprovalWrites, C

CANDIDATES = 1000  # ready runs of a key-limited workflow looked at per claim


class LimitWrites(ApprovalWrites[C], Generic[C]):
    def within_limits(self, ids: list[str], now: int, limits: Limits) -> list[str]:
        """`ids` with the runs of limited workflows replaced by the ones that may run."""
        marks = ", ".join("?" * len(ids))
        workflow_of = dict(
            self.conn.execute(f"SELECT id, workflow FROM runs WHERE id IN ({marks})", ids)
        )
        capped = {w for w in workflow_of.values() if w in limits.workflows or w in limits.keys}
        if not capped:
            return ids
        keep = [rid for rid in ids if workflow_of.get(rid) not in capped]
        for workflow in sorted(capped):  # sorted: supervisors take the locks in one order
            cap, per_key = limits.workflows.get(workflow), limits.keys.get(workflow)
            asked = sum(1 for w in workflow_of.values() if w == workflow)  # the places held
            keep += self.may_run(workflow, cap, per_key, now, asked)
        return keep

    def may_run(
        self, workflow: str, cap: int | None, per_key: int | None, now: int, most: int
    ) -> list[str]:
        """The oldest ready runs of `workflow` that fit in its free places, at most `most`."""
        self._lock_workflow(workflow)
        room = most
        if cap is not None:
            (running,) = self.conn.execute(
                "SELECT COUNT(*) FROM runs WHERE workflow = ? AND status = 'running'", (workflow,)
            ).fetchone()
            room = min(most, cap - running)
        if room <= 0:
            return []
        if per_key is None:
            return self.ready_of(workflow, now, room)
        busy: dict[str, int] = dict(
            self.conn.execute(
                "SELECT concurrency_key, COUNT(*) FROM runs WHERE workflow = ?"
                " AND status = 'running' AND concurrency_key IS NOT NULL GROUP BY 1",
                (workflow,),
            )
        )
        out: list[str] = []
        for rid, key in self.conn.execute(
            "SELECT id, concurrency_key FROM runs WHERE workflow = ? AND status = 'pending'"
            " AND (wake_at IS NULL OR wake_at <= ?) ORDER BY created_at, id LIMIT ?",
            (workflow, now, CANDIDATES),
        ).fetchall():
            if len(out) >= room:
                break
            if key is not None:  # a key not known yet is found out by the worker
                if busy.get(key, 0) >= per_key:
                    continue
                busy[key] = busy.get(key, 0) + 1
            out.append(rid)
        return out

    def keyed(self, req: Keyed, now: int, limits: Mapping[str, int]) -> bool:
        row = self.conn.execute(
            "SELECT workflow, claim_token, status FROM runs WHERE id = ?", (req.run_id,)
        ).fetchone()
        if row is None or row[1] != req.token or row[2] != "running":
            raise StaleClaim(f"run {req.run_id} is no longer held by this worker")
        workflow = row[0]
        self._lock_workflow(workflow)
        self.conn.execute("UPDATE runs SET concurrency_key = ? WHERE id = ?", (req.key, req.run_id))
        (others,) = self.conn.execute(
            "SELECT COUNT(*) FROM runs WHERE workflow = ? AND concurrency_key = ?"
            " AND status = 'running' AND id != ?",
            (workflow, req.key, req.run_id),
        ).fetchone()
        if others < limits.get(workflow, others + 1):
            return True
        self.conn.execute(  # its key is full: back in line, to start when a place frees
            "UPDATE runs SET status = 'pending', claim_token = claim_token + 1, owner = NULL,"
            " updated_at = ? WHERE id = ?",
            (now, req.run_id),
        )
        return False

    def ready_of(self, workflow: str, now: int, limit: int) -> list[str]:
        """Up to `limit` of the workflow's ready runs, oldest first."""
        rows = self.conn.execute(
            "SELECT id FROM runs WHERE workflow = ? AND status = 'pending'"
            " AND (wake_at IS NULL OR wake_at <= ?) ORDER BY created_at, id LIMIT ?",
            (workflow, now, limit),
        )
        return [row[0] for row in rows]

    def _lock_workflow(self, workflow: str) -> None:
        if self.dialect.workflow_lock:
            self.conn.execute(self.dialect.workflow_lock, (f"tako limit {workflow}",))
